//! What the routes are configured with: verzoektypen, taken, berichten, notificaties (templates,
//! quiet hours, digests, escalation).

use super::*;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerzoekConfig {
    pub bron_naam: String,
    /// Productaanvraag type → URL of its Open VTB verzoektype.
    pub verzoektypen: BTreeMap<String, String>,
    /// Open VTB `kanaal` of verzoeken from the portal.
    pub kanaal: String,
    /// URN namespace of informatieobjecten: a document URL's last segment is appended.
    pub informatieobject_urn: String,
    /// URN namespace of zaken by zaaknummer: a zaak's `identificatie` is appended.
    pub zaak_urn: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TakenConfig {
    /// Hour of the day (Europe/Amsterdam) at which a taak's `datumHerinnering` reminds.
    pub herinnering_uur: i8,
    /// Ogone PSPID of a betaaltaak whose `doelrekening.code` names none.
    #[serde(default)]
    pub pspid: Option<String>,
    /// Open VTB URN namespace of zaken by uuid (`isGerelateerdAan`), e.g.
    /// `urn:nld:gemeente:zaak:uuid`: such a URN gives the portal taak its `koppeling`.
    pub zaak_uuid_urn: String,
}

/// How GZAC's bericht vocabulary maps onto NL Portal's. A value with no entry is not guessed:
/// the bericht goes back to GZAC as a weigering.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BerichtenConfig {
    /// Open VTB `berichtType` (GZAC's code; `geen` when it has none) → NL Portal `berichtType`.
    pub typen: BTreeMap<String, crate::model::portaal::BerichtType>,
    /// Open VTB `handelingsPerspectief` (`geen` when it has none) → NL Portal's.
    pub handelingsperspectieven: BTreeMap<String, String>,
    /// NL Portal requires an einddatum: without one from GZAC, this many days after publication.
    pub standaard_termijn_dagen: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standaard {
    Geen,
    Email,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotificatieConfig {
    pub standaard: Standaard,
    pub portaal_url: String,
    pub templates: Templates,
    /// SMS (or email) held during these hours and sent when they end; none: off.
    #[serde(default)]
    pub stille_uren: Option<StilleUren>,
    /// Notificaties for one klant on one channel within a window sent as one.
    pub bundel: Bundeling,
    /// A reminder on another channel when a bericht or taak that asks to act is left alone.
    pub escalatie: Escalatie,
}

/// Quiet hours in Europe/Amsterdam, e.g. 21:00–08:00 (`van` after `tot`: over midnight).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StilleUren {
    /// `HH:MM`, local time.
    pub van: String,
    pub tot: String,
    /// The channels held (`sms`, and `email` if wanted).
    pub kanalen: Vec<crate::model::common::Kanaal>,
    /// Gebeurtenissen sent at once, quiet or not (e.g. `taak-escalatie`).
    #[serde(default)]
    pub uitgezonderd: Vec<String>,
}

impl StilleUren {
    /// (`van`, `tot`) as minutes after local midnight.
    pub fn minuten(&self) -> Result<(i32, i32), String> {
        let parse = |s: &str| -> Option<i32> {
            let (h, m) = s.split_once(':')?;
            let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
            ((0..24).contains(&h) && (0..60).contains(&m) && s.len() == 5).then_some(h * 60 + m)
        };
        match (parse(&self.van), parse(&self.tot)) {
            (Some(v), Some(t)) if v != t => Ok((v, t)),
            (Some(_), Some(_)) => Err("notificaties.stille_uren: van and tot are the same moment".into()),
            _ => Err(format!(
                "notificaties.stille_uren: van and tot must be HH:MM, got {:?} and {:?}",
                self.van, self.tot
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bundeling {
    /// How long after the first notificatie the window closes; 0: no digests.
    #[serde(with = "humantime_serde")]
    pub venster: Duration,
    pub kanalen: Vec<crate::model::common::Kanaal>,
    /// The gebeurtenissen that may be bundled (reminders and escalations are sent on their own).
    pub gebeurtenissen: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Escalatie {
    pub berichten: BerichtEscalatie,
    pub taken: TaakEscalatie,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BerichtEscalatie {
    /// Open VTB handelingsPerspectief values that ask the klant to act.
    pub handelingsperspectieven: Vec<String>,
    /// Still unopened this long before the end of the einddatumHandelingsTermijn: escalate.
    #[serde(default, with = "humantime_serde")]
    pub voor_einddatum: Option<Duration>,
    /// Still unopened this long after publication: escalate (whichever comes first).
    #[serde(default, with = "humantime_serde")]
    pub na_publicatie: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaakEscalatie {
    /// Still open this long before the end of its last day: escalate.
    #[serde(default, with = "humantime_serde")]
    pub voor_einddatum: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub bericht: ChannelTemplates,
    pub taak: ChannelTemplates,
    /// A reminder of an open taak at its `datumHerinnering`.
    pub herinnering: ChannelTemplates,
    /// A reminder on another channel of a bericht left unopened or a taak left open (escalatie).
    pub escalatie: ChannelTemplates,
    /// Several notificaties as one (`aantal` and a link to the portal's overview).
    pub bundel: ChannelTemplates,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelTemplates {
    /// Language (ISO 639-2/B, as Open Klant's `voorkeurstaal`) → NotifyNL template UUID.
    pub email: BTreeMap<String, String>,
    pub sms: BTreeMap<String, String>,
}

/// The language whose template is used when the klant has no `voorkeurstaal` or none exists for it.
pub const DEFAULT_TAAL: &str = "nld";

impl VerzoekConfig {
    /// The informatieobject URN of a document URL (its last path segment in our namespace).
    pub fn informatieobject(&self, url: &str) -> String {
        let id = url.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        format!("{}:{id}", self.informatieobject_urn.trim_end_matches(':'))
    }

    /// The URN of a zaak by its zaaknummer (`identificatie`).
    pub fn zaak(&self, identificatie: &str) -> String {
        format!("{}:{identificatie}", self.zaak_urn.trim_end_matches(':'))
    }
}

impl ChannelTemplates {
    /// The template for `kanaal` in `taal`, or in `DEFAULT_TAAL` when `taal` has none.
    pub fn get(&self, kanaal: crate::model::common::Kanaal, taal: Option<&str>) -> &str {
        let map = match kanaal {
            crate::model::common::Kanaal::Email => &self.email,
            crate::model::common::Kanaal::Sms => &self.sms,
        };
        taal.and_then(|t| map.get(t)).or_else(|| map.get(DEFAULT_TAAL)).map(String::as_str).unwrap_or_default()
    }
}
