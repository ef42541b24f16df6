//! Records shared by both sides: what the bridge itself says (terugmeldingen, notificatie-opdrachten).

use super::Timestamp;
use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the bridge did with something the portal sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
#[serde(rename_all = "lowercase")]
pub enum TerugmeldingStatus {
    Ontvangen,
    Doorgestuurd,
    Afgewezen,
}

/// The kind of portal input a terugmelding answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
#[serde(rename_all = "lowercase")]
pub enum Soort {
    Verzoek,
    Zaakverzoek,
    Taakantwoord,
}

/// The bridge tells the portal what became of a record it sent. Never carries form data or a BSN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct Terugmelding {
    /// Stable id of this terugmelding (derived from the input's id and the status).
    pub id: String,
    /// The portal's id of what it sent (e.g. the submission id of a verzoek).
    pub referentie: String,
    pub soort: Soort,
    pub status: TerugmeldingStatus,
    /// Machine-readable reason when afgewezen, e.g. `ONGELDIG_BSN`.
    pub reden_code: Option<String>,
    /// Human text without confidential content.
    pub toelichting: String,
    /// The id of the record forwarded to GZAC, when doorgestuurd.
    pub gzac_id: Option<String>,
    pub tijdstip: super::Timestamp,
}

/// What GZAC sent that the bridge could not deliver to the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
#[serde(rename_all = "lowercase")]
pub enum WeigeringSoort {
    Bericht,
    Taak,
}

/// The bridge tells GZAC that a bericht or taak did not reach the portal, and why (e.g. an
/// ontvanger the portal cannot address, a value with no portal counterpart). Never repeats the
/// record's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct Weigering {
    /// Stable id (derived from the referentie and the reason): a replay repeats it.
    pub id: String,
    /// The uuid GZAC gave the bericht or taak.
    pub referentie: String,
    pub soort: WeigeringSoort,
    /// Machine-readable reason, e.g. `ONBEKENDE_ONTVANGER`.
    pub reden_code: String,
    pub toelichting: String,
    pub tijdstip: Timestamp,
}

/// Channel of a notificatie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
#[serde(rename_all = "lowercase")]
pub enum Kanaal {
    Email,
    Sms,
}

/// An instruction for an email/SMS sender (NotifyNL): an envelope around `request`, the exact
/// body the sender posts. It only says that something waits in the portal: built from a template
/// id and allow-listed personalisation, never from a bericht's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct Notificatieopdracht {
    /// Deterministic: derived from the item id and the channel, so a replay yields the same id.
    pub id: String,
    pub kanaal: Kanaal,
    /// Id of the bericht or taak this is about.
    pub referentie: String,
    /// The event that caused it, e.g. `bericht-gepubliceerd`.
    pub gebeurtenis: String,
    pub tijdstip: Timestamp,
    /// The body of NotifyNL's `POST /v2/notifications/email` or `/sms`, field for field.
    pub request: NotifyRequest,
}

/// NotifyNL's (GOV.UK Notify's) notification request: `email_address` for email, `phone_number`
/// for SMS; `template_id` a template's UUID; `reference` our notificatie id, echoed back in
/// delivery receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct NotifyRequest {
    pub template_id: String,
    pub email_address: Option<String>,
    pub phone_number: Option<String>,
    pub personalisation: HashMap<String, String>,
    pub reference: String,
}

/// The bridge tells GZAC that a klant could not be reached digitally about a bericht or taak that
/// asks them to act (unopened or open near its deadline, and no channel left to remind them on):
/// time for a letter. Never repeats the item's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct NietBereikt {
    /// Stable id (derived from the referentie): one per item.
    pub id: String,
    /// The uuid GZAC gave the bericht or taak.
    pub referentie: String,
    pub soort: WeigeringSoort,
    /// `GEEN_ANDER_KANAAL` (the reminders went out on every channel the klant has) or
    /// `GEEN_KANAAL` (no digital address at all).
    pub reden_code: String,
    pub toelichting: String,
    pub tijdstip: Timestamp,
}

/// A notificatie on its way to `notificaties.opdrachten.v1`, on the bridge's internal topic keyed
/// by klant, where quiet hours and digests hold and bundle it per klant and channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.common")]
pub struct NotificatieVerzoek {
    /// The klant, as a derived id (never a BSN): the key of the internal topic.
    pub klant: String,
    /// The klant's voorkeurstaal when it was made (the digest's template follows it).
    pub voorkeurstaal: Option<String>,
    pub opdracht: Notificatieopdracht,
}
