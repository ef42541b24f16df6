//! Notificaties: one per channel the klant chose, built only from a template id and an
//! allow-listed personalisation (portal link, kind of item, deadline date). Nothing of a
//! bericht's or taak's content can reach an email or SMS: this module never sees it.
//!
//! The bericht and taak routes make them here and hand them to the `bezorging` stage on an
//! internal topic keyed by klant, which holds them through quiet hours, bundles them into digests
//! and writes `notificaties.opdrachten.v1`.

use super::{derived_id, event, partij_key};
use crate::config::{Config, NotificatieConfig, Standaard};
use crate::model::common::{Kanaal, NotificatieVerzoek, Notificatieopdracht, NotifyRequest};
use crate::model::{portaal, Datum, Timestamp};
use crate::pipeline::{Output, Payload, RouteError, Start};
use crate::table::GlobalTable;
use apache_avro::{AvroSchema, Schema};
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::topics::NOTIFICATIES as TOPIC;
/// Where the routes hand notificaties to the `bezorging` stage: keyed by klant (a derived id),
/// in the partition murmur2(klant) gives.
pub use crate::topics::NOTIFICATIES_REPARTITION as INTERN;
pub const TYPE: &str = "nl.overheid.notificaties.notificatie-opdracht";
pub const TYPE_INTERN: &str = "nl.gzac-portal-bridge.intern.notificatie-verzoek";
/// The `gebeurtenis` of a taak reminder.
pub const HERINNERING: &str = "taak-herinnering";
/// The `gebeurtenis` of an escalation (a reminder on another channel).
pub const ESCALATIE_BERICHT: &str = "bericht-escalatie";
pub const ESCALATIE_TAAK: &str = "taak-escalatie";

/// What the notificatie is about: all it may say.
pub struct Item<'a> {
    /// `bericht` or `taak`.
    pub soort: &'static str,
    /// The portal's id of the item (never the source's own text).
    pub id: &'a str,
    /// The last day to act (a day in Europe/Amsterdam).
    pub deadline: Option<Datum>,
    /// The event that caused it, e.g. `bericht-gepubliceerd`; `taak-herinnering` and the
    /// escalations pick their own template.
    pub gebeurtenis: &'static str,
    /// When (the route's clock): the notificatie's `tijdstip`.
    pub op: Timestamp,
}

/// Which channels to notify on.
pub enum Kanalen<'a> {
    /// The klant's choice (or the default).
    Gekozen,
    /// Every channel the klant has an address for, except these (an escalation).
    Behalve(&'a [Kanaal]),
}

/// The channels and addresses to use for this klant, by the klant's choice or the default.
pub fn channels(voorkeur: Option<&portaal::Klantvoorkeur>, standaard: Standaard) -> Vec<(Kanaal, String)> {
    let Some(v) = voorkeur else { return vec![] };
    let chosen: Vec<Kanaal> =
        if v.kanalen.is_empty() && standaard == Standaard::Email { vec![Kanaal::Email] } else { v.kanalen.clone() };
    with_address(v, &chosen)
}

fn with_address(v: &portaal::Klantvoorkeur, kanalen: &[Kanaal]) -> Vec<(Kanaal, String)> {
    let address = |k: Kanaal| match k {
        Kanaal::Email => v.adres(portaal::SoortDigitaalAdres::Email),
        Kanaal::Sms => v.adres(portaal::SoortDigitaalAdres::Telefoonnummer),
    };
    let mut out: Vec<(Kanaal, String)> = Vec::new();
    for &k in kanalen {
        if let Some(a) = address(k) {
            if !out.iter().any(|(c, _)| *c == k) {
                out.push((k, a.to_string()));
            }
        }
    }
    out
}

/// The klant as the internal topic's key: derived, so no BSN or KVK number is a record key.
pub fn klant_id(ontvanger: &portaal::Partij) -> String {
    derived_id(&["klant", &partij_key(ontvanger)])
}

/// Makes notificaties for a route and hands them to the bezorging stage.
pub struct Notifier {
    cfg: NotificatieConfig,
    voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>,
    topic: String,
    partitions: i32,
}

impl Notifier {
    pub fn new(cfg: &Config, voorkeuren: Arc<GlobalTable<portaal::Klantvoorkeur>>) -> Self {
        Notifier { cfg: cfg.notificaties.clone(), voorkeuren, topic: cfg.topic(INTERN), partitions: 0 }
    }

    /// The internal topic and its schema (a route's output).
    pub fn output(&self) -> (String, Schema) {
        (self.topic.clone(), NotificatieVerzoek::get_schema())
    }

    /// Wait for the klantvoorkeuren table and learn the internal topic's partition count.
    pub fn prepare(&mut self, start: &Start<'_>) -> anyhow::Result<()> {
        self.voorkeuren.wait_ready(start.shutdown)?;
        self.partitions = start.partition_count(&self.topic)?;
        Ok(())
    }

    /// The notificaties for `ontvanger` about `item` on `kanalen`, and the channels they use.
    /// Ids derive from item, event and channel, so a replay yields the same ids.
    pub fn verzoeken(
        &self,
        ontvanger: &portaal::Partij,
        item: &Item<'_>,
        kanalen: Kanalen<'_>,
    ) -> Result<(Vec<Output>, Vec<Kanaal>), RouteError> {
        let cfg = &self.cfg;
        let voorkeur = self.voorkeuren.lookup(&partij_key(ontvanger));
        let templates = match (item.soort, item.gebeurtenis) {
            (_, HERINNERING) => &cfg.templates.herinnering,
            (_, ESCALATIE_BERICHT | ESCALATIE_TAAK) => &cfg.templates.escalatie,
            ("taak", _) => &cfg.templates.taak,
            _ => &cfg.templates.bericht,
        };
        let mut personalisation = HashMap::from([
            (
                "link".to_string(),
                format!("{}/{}", cfg.portaal_url.trim_end_matches('/'), item_path(item.soort, item.id)),
            ),
            ("soort".to_string(), item.soort.to_string()),
        ]);
        if let Some(d) = item.deadline {
            personalisation.insert("uiterste_datum".into(), d.iso());
        }
        let taal = voorkeur.as_ref().and_then(|v| v.voorkeurstaal.clone());
        let gekozen = match (kanalen, voorkeur.as_ref()) {
            (Kanalen::Gekozen, v) => channels(v, cfg.standaard),
            (Kanalen::Behalve(used), Some(v)) => {
                let rest: Vec<Kanaal> =
                    [Kanaal::Email, Kanaal::Sms].into_iter().filter(|k| !used.contains(k)).collect();
                with_address(v, &rest)
            }
            (Kanalen::Behalve(_), None) => vec![],
        };
        let klant = klant_id(ontvanger);
        let partition = crate::partitioner::partition_for(klant.as_bytes(), self.partitions.max(1));
        let mut out = Vec::new();
        for (kanaal, adres) in &gekozen {
            // One per item, event and channel: a reminder is another notificatie than the first.
            let id = derived_id(&["notificatie", item.soort, item.id, item.gebeurtenis, &format!("{kanaal:?}")]);
            let (email_address, phone_number) = match kanaal {
                Kanaal::Email => (Some(adres.clone()), None),
                Kanaal::Sms => (None, Some(adres.clone())),
            };
            let opdracht = Notificatieopdracht {
                id: id.clone(),
                kanaal: *kanaal,
                referentie: item.id.to_string(),
                gebeurtenis: item.gebeurtenis.to_string(),
                tijdstip: item.op,
                request: NotifyRequest {
                    template_id: templates.get(*kanaal, taal.as_deref()).to_string(),
                    email_address,
                    phone_number,
                    personalisation: personalisation.clone(),
                    reference: id.clone(),
                },
            };
            let v = NotificatieVerzoek { klant: klant.clone(), voorkeurstaal: taal.clone(), opdracht };
            out.push(Output {
                topic: self.topic.clone(),
                key: klant.clone(),
                value: Payload::Avro(Box::new(v)),
                event: event(TYPE_INTERN, &id),
                partition: Some(partition),
                link: None,
            });
        }
        Ok((out, gekozen.into_iter().map(|(k, _)| k).collect()))
    }
}

/// The portal page of an item: `berichten/<id>` or `taken/<id>`.
fn item_path(soort: &str, id: &str) -> String {
    let plural = if soort == "taak" { "taken" } else { "berichten" };
    format!("{plural}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voorkeur(kanalen: Vec<Kanaal>, email: Option<&str>, tel: Option<&str>) -> portaal::Klantvoorkeur {
        let adres = |soort, a: Option<&str>| {
            a.map(|a| portaal::DigitaalAdres {
                soort_digitaal_adres: soort,
                adres: a.into(),
                omschrijving: None,
                is_standaard_adres: false,
            })
        };
        portaal::Klantvoorkeur {
            partij: portaal::Partij { soort: portaal::PartijType::Bsn, value: "569312863".into() },
            digitale_adressen: [
                adres(portaal::SoortDigitaalAdres::Email, email),
                adres(portaal::SoortDigitaalAdres::Telefoonnummer, tel),
            ]
            .into_iter()
            .flatten()
            .collect(),
            kanalen,
            voorkeurstaal: None,
        }
    }

    #[test]
    fn the_preferred_address_of_a_kind_is_used() {
        let mut v = voorkeur(vec![Kanaal::Email], Some("werk@b.nl"), None);
        v.digitale_adressen.push(portaal::DigitaalAdres {
            soort_digitaal_adres: portaal::SoortDigitaalAdres::Email,
            adres: "thuis@b.nl".into(),
            omschrijving: Some("privé".into()),
            is_standaard_adres: true,
        });
        assert_eq!(channels(Some(&v), Standaard::Geen), vec![(Kanaal::Email, "thuis@b.nl".to_string())]);
    }

    #[test]
    fn chosen_channels_with_an_address() {
        let v = voorkeur(vec![Kanaal::Email, Kanaal::Sms], Some("a@b.nl"), None);
        assert_eq!(channels(Some(&v), Standaard::Geen), vec![(Kanaal::Email, "a@b.nl".to_string())]);
    }

    #[test]
    fn default_applies_only_without_a_choice() {
        let v = voorkeur(vec![], Some("a@b.nl"), Some("0612345678"));
        assert_eq!(channels(Some(&v), Standaard::Geen), vec![]);
        assert_eq!(channels(Some(&v), Standaard::Email), vec![(Kanaal::Email, "a@b.nl".to_string())]);
        assert_eq!(channels(None, Standaard::Email), vec![]);
    }
}
