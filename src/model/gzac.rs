//! The GZAC vocabulary: Open VTB / Valtimo verzoek, portaaltaak, bericht, zaak.

use super::{Datum, Timestamp};
use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

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

/// Open VTB ExterneTaak `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "snake_case")]
pub enum TaakStatus {
    Open,
    Uitgevoerd,
    NietUitgevoerd,
    Afgebroken,
    Verwerkt,
}

/// Open VTB `taakSoort`; the matching details are in `details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "lowercase")]
pub enum TaakSoort {
    Betaaltaak,
    Urltaak,
    Formuliertaak,
}

/// Open VTB `HandelingsPerspectiefEnum` (taken and berichten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "snake_case")]
pub enum HandelingsPerspectief {
    Betalen,
    Incasso,
    InformatieGeven,
    InformatieKrijgen,
    ReactieOntvangen,
    VernieuwingNodig,
    UitnodigingVoorAfspraak,
}

/// The account a betaaltaak pays into (at least one of the three).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Doelrekening {
    pub naam: Option<String>,
    /// Picks the account or payment provider in the system that handles the taak: here the
    /// Ogone PSPID the portal pays through.
    pub code: Option<String>,
    pub iban: Option<String>,
}

/// Open VTB `BetaalTaak` details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct BetaalTaak {
    /// Amount in euro as a decimal string, e.g. `147.43`.
    pub bedrag: String,
    pub valuta: String,
    /// At most 80 characters; the portal's payment reference (betaalkenmerk).
    pub transactieomschrijving: String,
    pub doelrekening: Doelrekening,
}

/// Open VTB `URLTaak` details. Free-form documents are JSON strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct UrlTaak {
    pub uitvraag_link: String,
    pub voorinvullen_gegevens: Option<String>,
    pub ontvangen_gegevens: Option<String>,
    #[serde(default)]
    #[avro(default = "[]")]
    pub ontvangen_bijlagen: Vec<InformatieObject>,
}

/// Open VTB `FormulierTaak` details. `formulierDefinitie` is the form (JSON with `components`)
/// or, as Valtimo portaaltaken do, a reference `{"soort": "id"|"url", "value": …}` to a form the
/// portal has. Free-form documents are JSON strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct FormulierTaak {
    pub formulier_definitie: String,
    pub voorinvullen_gegevens: Option<String>,
    pub ontvangen_gegevens: Option<String>,
}

/// Open VTB `details`: one of three records, by `taakSoort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[serde(untagged)]
pub enum Details {
    Betaaltaak(BetaalTaak),
    Urltaak(UrlTaak),
    Formuliertaak(FormulierTaak),
}

/// A taak as Open VTB registers it (`ExterneTaak`, writer fields plus its uuid): GZAC writes its
/// lifecycle on `gzac.taken.v1`; the bridge writes the update for a done taak on
/// `gzac.taakantwoorden.v1` and `niet_uitgevoerd` for an expired one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct ExterneTaak {
    pub uuid: String,
    /// At most 100 characters, shown to the klant.
    pub titel: String,
    pub status: TaakStatus,
    /// The workflow engine's id (Valtimo's portaaltaak id), at most 36 characters.
    pub verwerker_taak_id: Option<String>,
    pub startdatum: Option<Datum>,
    pub handelings_perspectief: Option<HandelingsPerspectief>,
    /// The last day to do it; past it (Europe/Amsterdam) the taak expires.
    pub einddatum_handelings_termijn: Datum,
    /// The day the assignee is reminded.
    pub datum_herinnering: Option<Datum>,
    /// At most 80 characters, shown to the klant.
    pub toelichting: Option<String>,
    /// URN of the assignee, e.g. `urn:nld:brp:bsn:…` or `urn:nld:hr:kvknummer:…:vestigingsnummer:…`.
    pub is_toegewezen_aan: String,
    #[serde(default)]
    #[avro(default = "[]")]
    pub is_gerelateerd_aan: Vec<IsGerelateerdAan>,
    pub taak_soort: TaakSoort,
    pub details: Details,
}

/// A document of a bericht (Open VTB berichten `Bijlage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct BerichtBijlage {
    /// URN of the informatieobject.
    pub informatie_object: String,
    /// File name shown to the klant, at most 40 characters.
    pub omschrijving: Option<String>,
    /// A standard attachment pre-uploaded to the Berichtenbox (ignored by the portal side).
    #[serde(default)]
    #[avro(default = "false")]
    pub is_bericht_type_bijlage: bool,
}

/// A bericht as Open VTB registers it and GZAC writes it (`Bericht`, writer fields plus its uuid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct Bericht {
    pub uuid: String,
    /// At most 50 characters.
    pub onderwerp: String,
    /// At most 4000 characters; may be confidential.
    pub bericht_tekst: String,
    /// When the ontvanger may see it; none means at once.
    pub publicatiedatum: Option<Timestamp>,
    /// GZAC's own reference, at most 25 characters.
    pub referentie: Option<String>,
    /// URN of the person or organisation it is for.
    pub ontvanger: String,
    pub geopend_op: Option<Timestamp>,
    /// GZAC's code for the kind of bericht, at most 8 characters (mapped to NL Portal's by
    /// `berichten.typen`).
    pub bericht_type: Option<String>,
    #[serde(default)]
    #[avro(default = "[]")]
    pub is_gerelateerd_aan: Vec<IsGerelateerdAan>,
    pub handelings_perspectief: Option<HandelingsPerspectief>,
    pub einddatum_handelings_termijn: Option<Timestamp>,
    pub mijn_overheid_berichtenbox: bool,
    #[serde(default)]
    #[avro(default = "[]")]
    pub bijlagen: Vec<BerichtBijlage>,
}

/// ZGW `Rol.betrokkeneType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "snake_case")]
pub enum BetrokkeneType {
    NatuurlijkPersoon,
    NietNatuurlijkPersoon,
    Vestiging,
    OrganisatorischeEenheid,
    Medewerker,
}

/// ZGW `Rol.omschrijvingGeneriek`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "snake_case")]
pub enum OmschrijvingGeneriek {
    Adviseur,
    Behandelaar,
    Belanghebbende,
    Beslisser,
    Initiator,
    Klantcontacter,
    Zaakcoordinator,
    MedeInitiator,
}

/// ZGW `Rol.betrokkeneIdentificatie`: the fields that identify a party (BSN of a natuurlijk
/// persoon; RSIN or KVK number of a niet-natuurlijk persoon; vestigingsnummer and KVK number of a
/// vestiging). ZGW's other fields (names, addresses) are not the bridge's to carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct BetrokkeneIdentificatie {
    pub inp_bsn: Option<String>,
    pub inn_nnp_id: Option<String>,
    pub kvk_nummer: Option<String>,
    pub vestigings_nummer: Option<String>,
}

/// A ZGW `Rol` of a zaak: who is involved, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct Rol {
    pub betrokkene_type: BetrokkeneType,
    pub omschrijving_generiek: OmschrijvingGeneriek,
    pub betrokkene_identificatie: BetrokkeneIdentificatie,
}

/// A zaak as the ZGW Zaken API names it, with its rollen (compacted table keyed by zaak uuid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
pub struct Zaak {
    pub url: String,
    pub uuid: String,
    /// The zaaknummer, e.g. `ZAAK-2026-0042`.
    pub identificatie: String,
    /// URL of the zaaktype in the Catalogi API.
    pub zaaktype: String,
    /// URL of the zaak's current status, if it has one.
    pub status: Option<String>,
    pub rollen: Vec<Rol>,
}

/// Open VTB's update of a bericht's first opening (`PATCH /berichten/{uuid}` with
/// `PatchedBerichtGeopendOp`): the bericht's uuid and `geopendOp`. Written once per bericht.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "nl.gzac.zaak")]
#[serde(rename_all = "camelCase")]
pub struct BerichtGeopendOp {
    pub uuid: String,
    pub geopend_op: Timestamp,
}
