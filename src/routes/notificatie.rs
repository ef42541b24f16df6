//! Notificaties: one opdracht per channel the klant chose, built only from a template id and an
//! allow-listed personalisation (portal link, kind of item, deadline date). Nothing of a
//! bericht's or taak's content can reach an email or SMS: this module never sees it.

use super::{derived_id, event, partij_key};
use crate::config::{NotificatieConfig, Standaard};
use crate::model::common::{Kanaal, Notificatieopdracht, NotifyRequest};
use crate::model::{portaal, Datum, Timestamp};
use crate::pipeline::Output;
use crate::table::GlobalTable;
use std::collections::HashMap;

pub const TOPIC: &str = "notificaties.opdrachten.v1";
pub const TYPE: &str = "nl.overheid.notificaties.notificatie-opdracht";
/// The `gebeurtenis` of a taak reminder.
pub const HERINNERING: &str = "taak-herinnering";

/// What the notificatie is about: all it may say.
pub struct Item<'a> {
    /// `bericht` or `taak`.
    pub soort: &'static str,
    /// The portal's id of the item (never the source's own text).
    pub id: &'a str,
    /// The last day to act (a day in Europe/Amsterdam).
    pub deadline: Option<Datum>,
    /// The event that caused it, e.g. `bericht-gepubliceerd`; `taak-herinnering` picks the
    /// reminder template.
    pub gebeurtenis: &'static str,
}

/// The channels and addresses to use for this klant, by the klant's choice or the default.
pub fn channels(voorkeur: Option<&portaal::Klantvoorkeur>, standaard: Standaard) -> Vec<(Kanaal, String)> {
    let Some(v) = voorkeur else { return vec![] };
    let address = |k: Kanaal| match k {
        Kanaal::Email => v.adres(portaal::SoortDigitaalAdres::Email),
        Kanaal::Sms => v.adres(portaal::SoortDigitaalAdres::Telefoonnummer),
    };
    let chosen: Vec<Kanaal> =
        if v.kanalen.is_empty() && standaard == Standaard::Email { vec![Kanaal::Email] } else { v.kanalen.clone() };
    let mut out: Vec<(Kanaal, String)> = Vec::new();
    for k in chosen {
        if let Some(a) = address(k) {
            if !out.iter().any(|(c, _)| *c == k) {
                out.push((k, a.to_string()));
            }
        }
    }
    out
}

/// The notificatie opdrachten for `ontvanger` about `item`. Ids derive from item and channel, so
/// a replay yields the same ids.
pub fn opdrachten(
    cfg: &NotificatieConfig,
    voorkeuren: &GlobalTable<portaal::Klantvoorkeur>,
    ontvanger: &portaal::Partij,
    item: &Item<'_>,
    topic: &str,
) -> anyhow::Result<Vec<Output>> {
    let voorkeur = voorkeuren.lookup(&partij_key(ontvanger));
    let templates = match (item.soort, item.gebeurtenis) {
        (_, HERINNERING) => &cfg.templates.herinnering,
        ("taak", _) => &cfg.templates.taak,
        _ => &cfg.templates.bericht,
    };
    let plural = if item.soort == "taak" { "taken" } else { "berichten" };
    let mut personalisation = HashMap::from([
        ("link".to_string(), format!("{}/{plural}/{}", cfg.portaal_url.trim_end_matches('/'), item.id)),
        ("soort".to_string(), item.soort.to_string()),
    ]);
    if let Some(d) = item.deadline {
        personalisation.insert("uiterste_datum".into(), d.iso());
    }
    let taal = voorkeur.as_ref().and_then(|v| v.voorkeurstaal.as_deref());
    channels(voorkeur.as_ref(), cfg.standaard)
        .into_iter()
        .map(|(kanaal, adres)| {
            // One per item, event and channel: a reminder is another notificatie than the first.
            let id = derived_id(&["notificatie", item.soort, item.id, item.gebeurtenis, &format!("{kanaal:?}")]);
            let (email_address, phone_number) = match kanaal {
                Kanaal::Email => (Some(adres), None),
                Kanaal::Sms => (None, Some(adres)),
            };
            let n = Notificatieopdracht {
                id: id.clone(),
                kanaal,
                referentie: item.id.to_string(),
                gebeurtenis: item.gebeurtenis.to_string(),
                tijdstip: Timestamp::now(),
                request: NotifyRequest {
                    template_id: templates.get(kanaal, taal).to_string(),
                    email_address,
                    phone_number,
                    personalisation: personalisation.clone(),
                    reference: id.clone(),
                },
            };
            Output::new(topic, id.clone(), &n, event(TYPE, &id))
        })
        .collect()
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
