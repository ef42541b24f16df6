//! The GZAC vocabulary: Open VTB / Valtimo verzoek, portaaltaak, bericht, zaak.

use super::Timestamp;
use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Kind of identifier of a GZAC party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "lowercase")]
pub enum PartijSoort {
    Bsn,
    Kvk,
    Vestigingsnummer,
    Rsin,
}

/// A typed party; `urn` is e.g. `urn:nld:brp:bsn:…` or `urn:nld:hr:kvknummer:…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Partij {
    pub soort: PartijSoort,
    pub waarde: String,
    pub urn: String,
}

/// Where a verzoek came from (Open VTB `verzoekBron`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Bron {
    pub naam: String,
    pub kenmerk: String,
}

/// What a verzoek is about (Open VTB `IsGerelateerdAan`): the URN of a zaak or product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct IsGerelateerdAan {
    pub urn: String,
}

/// A document of a verzoek (Open VTB `Bijlage`): an informatieobject URN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct InformatieObject {
    #[serde(rename = "informatieObject")]
    pub informatie_object: String,
}

/// Payment of a verzoek (Open VTB `verzoekBetaling`): `bedrag` in euro as a decimal string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct VerzoekBetaling {
    #[serde(rename = "providerKenmerk")]
    pub provider_kenmerk: Option<String>,
    pub bedrag: Option<String>,
    pub voltooid: bool,
    #[serde(rename = "transactieDatum")]
    pub transactie_datum: Option<Timestamp>,
    /// The payment provider's id of the transaction.
    #[serde(rename = "transactieReferentie")]
    pub transactie_referentie: Option<String>,
}

/// A verzoek as Open VTB registers it and GZAC reads it: Open VTB's `Verzoek`, its writer
/// fields, field for field (`url`, `urn` and `verzoekTypeUrn` are the register's to fill).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Verzoek {
    /// UUID v5 of the portal's submission id: a replay never makes a second verzoek.
    pub uuid: String,
    /// URL of the Open VTB verzoektype (configured per productaanvraag type).
    #[serde(rename = "verzoekType")]
    pub verzoek_type: String,
    /// The form data, a JSON document.
    #[serde(rename = "aanvraagGegevens")]
    pub aanvraag_gegevens: String,
    /// URN of the party that filed it.
    pub initiator: String,
    /// URN of the submission's PDF.
    #[serde(rename = "verzoekInformatieObject")]
    pub verzoek_informatie_object: Option<String>,
    pub bijlagen: Vec<InformatieObject>,
    #[serde(rename = "verzoekBron")]
    pub verzoek_bron: Bron,
    #[serde(rename = "verzoekBetaling")]
    pub verzoek_betaling: Option<VerzoekBetaling>,
    /// ISO 639-1, e.g. `nl`.
    #[serde(rename = "verzoekTaal")]
    pub verzoek_taal: String,
    pub kanaal: String,
    /// The zaak a zaakverzoek is about (empty for a new verzoek).
    #[serde(rename = "isGerelateerdAan", default)]
    #[avro(default = "[]")]
    pub is_gerelateerd_aan: Vec<IsGerelateerdAan>,
}

/// Valtimo portaaltaak status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "lowercase")]
pub enum TaakStatus {
    Open,
    Ingediend,
    Verwerkt,
    Gesloten,
    Ingetrokken,
    Verlopen,
}

/// Valtimo portaaltaak identificatie `{type, value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Identificatie {
    #[serde(rename = "type")]
    pub soort: PartijSoort,
    pub value: String,
}

/// How the portal finds the form: by id or by URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "lowercase")]
pub enum FormulierType {
    Id,
    Url,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Formulier {
    #[serde(rename = "type")]
    pub soort: FormulierType,
    pub value: String,
}

/// A Valtimo portaaltaak lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Taak {
    pub uuid: String,
    pub identificatie: Identificatie,
    /// Prefill data as JSON.
    pub data: String,
    pub title: String,
    pub status: TaakStatus,
    pub formulier: Formulier,
    pub verwerker_taak_id: String,
    /// Zaak URL.
    pub zaak: Option<String>,
    pub verloopdatum: Option<Timestamp>,
}

/// A taak answer forwarded to GZAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct TaakAntwoord {
    pub uuid: String,
    pub verwerker_taak_id: String,
    pub verzonden_data: String,
    pub documenten: Vec<String>,
    pub status: TaakStatus,
    #[serde(rename = "ingediendOp")]
    pub ingediend_op: Timestamp,
}

/// A bericht from GZAC (Open VTB berichten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Bericht {
    pub uuid: String,
    pub ontvanger: Partij,
    /// At most 50 characters.
    pub onderwerp: String,
    /// At most 4000 characters; may be confidential.
    #[serde(rename = "berichtTekst")]
    pub bericht_tekst: String,
    #[serde(rename = "berichtType")]
    pub bericht_type: String,
    pub publicatiedatum: Timestamp,
    pub referentie: Option<String>,
    pub handelingsperspectief: String,
    #[serde(rename = "einddatumHandelingstermijn")]
    pub einddatum_handelingstermijn: Option<Timestamp>,
    pub bijlagen: Vec<String>,
    /// Zaak URL.
    pub zaak: Option<String>,
}

/// A party involved in a zaak, with its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Betrokkene {
    pub partij: Partij,
    pub rol: String,
}

/// Snapshot of a zaak (compacted table keyed by zaak uuid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Zaak {
    pub uuid: String,
    pub identificatie: String,
    pub zaaktype: String,
    pub status: String,
    pub betrokkenen: Vec<Betrokkene>,
}
