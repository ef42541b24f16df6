//! The portal vocabulary: Open Formulieren productaanvraag, NL Portal taak v2 and bericht.

use super::{Datum, Timestamp};
use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Which kind of identifier a portal party carries (NL Portal `identificatie.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum PartijType {
    Bsn,
    Kvk,
    // An organisation by its RSIN (the taak objecttype allows further types; NL Portal's
    // bericht identificatie type is free text).
    Rsin,
}

/// A klant as the portal identifies it (NL Portal `identificatie{type, value}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Partij {
    #[serde(rename = "type")]
    pub soort: PartijType,
    pub value: String,
}

/// The role in which the submitter acts. Ketenpartners contribute to verzoeken; they do not file them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum Rol {
    Klant,
    Ketenpartner,
}

/// Payment state of a productaanvraag, as Open Forms fills it (`payment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Payment {
    pub completed: bool,
    /// Amount in euro as a decimal string, e.g. `42.50`.
    pub amount: String,
    /// Open Forms' order ids, as the payment provider knows the order.
    pub public_order_ids: Vec<String>,
    /// The payment provider's ids of the payments.
    #[serde(default)]
    #[avro(default = "[]")]
    pub payment_ids: Vec<String>,
}

/// A productaanvraag as Open Formulieren writes it (objecttype productaanvraag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Verzoek {
    /// The form submission's id; the stable id of the verzoek.
    pub submission_id: String,
    /// The verzoektype (product), mapped to a zaaktype by the bridge's configuration.
    #[serde(rename = "type")]
    pub verzoektype: String,
    pub bsn: Option<String>,
    pub kvk: Option<String>,
    /// Acting as ketenpartner is a portal fact (e.g. the login's machtiging); none means klant.
    #[serde(default)]
    #[avro(default = "null")]
    pub rol: Option<Rol>,
    /// Free-form form data as a JSON document.
    pub data: String,
    /// The confirmation PDF in a Documenten API.
    pub pdf_url: Option<String>,
    /// The submitted data as CSV in a Documenten API.
    #[serde(default)]
    #[avro(default = "null")]
    pub csv_url: Option<String>,
    pub attachments: Vec<String>,
    /// ISO 639-1, e.g. `nl`.
    pub language_code: String,
    pub payment: Option<Payment>,
    pub submitted_at: Timestamp,
}

/// Reference to an existing zaak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct ZaakReferentie {
    pub uuid: String,
    pub url: Option<String>,
    pub identificatie: Option<String>,
}

/// A request about an existing zaak, from a klant or ketenpartner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct ZaakVerzoek {
    pub submission_id: String,
    #[serde(rename = "type")]
    pub verzoektype: String,
    pub zaak: ZaakReferentie,
    pub indiener: Partij,
    pub rol: Rol,
    pub data: String,
    pub attachments: Vec<String>,
    pub language_code: String,
    pub submitted_at: Timestamp,
}

/// Status of a taak in the portal (taak objecttype v1.1): an expired taak is `gesloten`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum TaakStatus {
    Open,
    Afgerond,
    Verwerkt,
    Gesloten,
}

/// Kind of taak (taak objecttype v1.1 `soort`); its details are in the field of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum TaakSoort {
    Url,
    Portaalformulier,
    Ogonebetaling,
}

/// Whom the taak is for (`identificatie`): `type` bsn or kvk, and the number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct TaakIdentificatie {
    #[serde(rename = "type")]
    pub soort: PartijType,
    pub value: String,
}

/// Link of a taak to a zaak or product (`koppeling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Koppeling {
    /// `zaak` or `product`.
    pub registratie: String,
    pub uuid: Option<String>,
}

/// A link to an external resource (`url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct TaakUrl {
    pub uri: String,
}

/// Which form: by id (stored in the portal) or by URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum FormulierSoort {
    Url,
    Id,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Formulier {
    pub soort: FormulierSoort,
    pub value: String,
}

/// The form a klant fills in (`portaalformulier`). `data` (prefill) and `verzonden_data` (what
/// the klant sent) are JSON documents, carried as JSON strings (Avro has no free objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Portaalformulier {
    pub formulier: Formulier,
    pub data: Option<String>,
    pub verzonden_data: Option<String>,
}

/// A payment through Ogone / Ingenico (`ogonebetaling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Ogonebetaling {
    pub bedrag: f64,
    pub betaalkenmerk: String,
    pub pspid: String,
}

/// An externe klant taak as the portal stores it: the taak objecttype v1.1 (NL Portal taak v2),
/// field for field. The taak's uuid is the record key, not a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Taak {
    pub titel: String,
    pub status: TaakStatus,
    pub soort: TaakSoort,
    pub identificatie: TaakIdentificatie,
    pub verwerker_taak_id: String,
    pub eigenaar: String,
    pub koppeling: Koppeling,
    pub verloopdatum: Option<Timestamp>,
    pub url: Option<TaakUrl>,
    pub portaalformulier: Option<Portaalformulier>,
    pub ogonebetaling: Option<Ogonebetaling>,
}

/// What NL Portal writes when a klant or ketenpartner has done a taak: the taak record itself,
/// now `afgerond` with its `verzonden_data` (or paid), in an envelope saying who and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct TaakAntwoord {
    /// The portal's id of this submission.
    pub id: String,
    /// The taak's object uuid (the key of `portaal.taken.v1`).
    pub taak_id: String,
    pub ingediend_door: Partij,
    pub ingediend_op: Timestamp,
    pub taak: Taak,
    /// For an `ogonebetaling`: the payment provider's id of the transaction (Ogone PAYID).
    pub betaalreferentie: Option<String>,
}

/// NL Portal's `BerichtType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum BerichtType {
    Notificatie,
    Betaalverzoek,
    Uitnodiging,
    Verzoek,
}

/// NL Portal's `handelingsperspectief` values (its enum's JSON values hold spaces, which an
/// Avro enum symbol cannot: the field is a string holding one of these).
pub const HANDELINGSPERSPECTIEVEN: [&str; 3] = ["betalen", "informatie verstrekken", "informatie ontvangen"];

/// A bericht as NL Portal reads it (its `Bericht` object), field for field. Days are
/// Europe/Amsterdam days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct Bericht {
    /// GZAC's bericht uuid.
    pub id: String,
    /// The recipient.
    pub identificatie: Partij,
    pub onderwerp: String,
    #[serde(rename = "berichtTekst")]
    pub bericht_tekst: String,
    #[serde(rename = "berichtType")]
    pub bericht_type: BerichtType,
    /// URNs of the informatieobjecten.
    pub bijlages: Vec<String>,
    pub publicatiedatum: Datum,
    pub referentie: String,
    /// One of `HANDELINGSPERSPECTIEVEN`.
    pub handelingsperspectief: String,
    #[serde(rename = "einddatumHandelingstermijn")]
    pub einddatum_handelingstermijn: Datum,
    pub geopend: bool,
}

/// Open Klant's `soortDigitaalAdres`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "lowercase")]
pub enum SoortDigitaalAdres {
    Email,
    Telefoonnummer,
    Overig,
}

/// An Open Klant `DigitaalAdres`: an email address or phone number of the klant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "camelCase")]
pub struct DigitaalAdres {
    pub soort_digitaal_adres: SoortDigitaalAdres,
    pub adres: String,
    pub omschrijving: Option<String>,
    /// The klant's preferred address of its kind.
    #[serde(default)]
    #[avro(default = "false")]
    pub is_standaard_adres: bool,
}

/// A klant's contact preferences with Open Klant's names (compacted table, keyed by the portal's
/// klant id, never a BSN): its digitale adressen, the channels it chose for notificaties, and
/// its `voorkeurstaal` (ISO 639-2/B, e.g. `nld`), which picks the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
#[serde(rename_all = "camelCase")]
pub struct Klantvoorkeur {
    pub partij: Partij,
    pub digitale_adressen: Vec<DigitaalAdres>,
    pub kanalen: Vec<super::common::Kanaal>,
    pub voorkeurstaal: Option<String>,
}

impl Klantvoorkeur {
    /// The address for a kind: the preferred one of that kind, else the first.
    pub fn adres(&self, soort: SoortDigitaalAdres) -> Option<&str> {
        let of_kind =
            || self.digitale_adressen.iter().filter(|a| a.soort_digitaal_adres == soort && !a.adres.is_empty());
        of_kind().find(|a| a.is_standaard_adres).or_else(|| of_kind().next()).map(|a| a.adres.as_str())
    }
}

/// What the portal writes when the ontvanger opens a bericht in it (NL Portal sets `geopend` on
/// its bericht then): the moment, and who opened it. Every opening may be sent; only the first
/// counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.portaal")]
pub struct BerichtGeopend {
    /// The portal's id of this event.
    pub id: String,
    /// The portal bericht's id: GZAC's uuid (the key of `portaal.berichten.v1`).
    pub bericht_id: String,
    pub geopend_op: Timestamp,
    /// Who opened it: the ontvanger (an opening by anyone else is refused).
    pub door: Partij,
}
