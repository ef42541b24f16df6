//! One module per pattern: typed translation and rules, no Kafka. The pipeline runs them.
//! What several routes share lives here: deterministic ids, parties, terugmeldingen.

pub mod bericht;
pub mod bezorging;
pub mod notificatie;
pub mod repartition;
pub mod taak;
pub mod verzoek;
pub mod zaakverzoek;

use crate::codec::CodecError;
use crate::events::Event;
use crate::identifiers::{bsn_urn, elfproef, is_kvk, kvk_urn, parse_urn, rsin_urn, Urn};
use crate::model::common::{NietBereikt, Soort, Terugmelding, TerugmeldingStatus, Weigering, WeigeringSoort};
use crate::model::{portaal, Timestamp};
use crate::pipeline::{Decoder, Output, RouteError};
use uuid::Uuid;

/// Namespace for the bridge's deterministic (v5) ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0e_55b2_8f3c_4d1e_9b7a_2c4d_6e8f_a0b1);

/// A stable id derived from `parts`: the same input always yields the same id.
/// A required id of an input, present and not blank: no output may be keyed by an empty id.
pub fn required<'a>(field: &str, id: &'a str) -> Result<&'a str, RouteError> {
    match id.trim() {
        "" => Err(RouteError::bad_input(format!("{field} is empty"))),
        _ => Ok(id),
    }
}

pub fn derived_id(parts: &[&str]) -> String {
    Uuid::new_v5(&ID_NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

/// CloudEvents metadata for an output whose id derives from its type and subject.
pub fn event(kind: &'static str, subject: &str) -> Event {
    Event { id: derived_id(&[kind, subject]), kind, subject: subject.to_string(), ..Event::default() }
}

/// CloudEvents metadata for a record that has a stable id of its own, about `subject` (GZAC's or
/// the portal's reference).
fn record_event(kind: &'static str, record_id: &str, subject: &str) -> Event {
    Event { id: derived_id(&[kind, record_id]), kind, subject: subject.to_string(), ..Event::default() }
}

/// Why the portal's input is rejected: a code for machines and a text for people (never
/// confidential, never personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Afwijzing {
    pub code: &'static str,
    pub toelichting: String,
}

pub fn afwijzing(code: &'static str, toelichting: impl Into<String>) -> Afwijzing {
    Afwijzing { code, toelichting: toelichting.into() }
}

/// Form data must be a JSON document (Avro carries it as a string).
pub fn formulierdata(data: &str) -> Result<(), Afwijzing> {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(_) => Ok(()),
        Err(_) => Err(afwijzing("ONGELDIGE_FORMULIERDATA", "De formuliergegevens zijn geen geldig JSON-document.")),
    }
}

/// The terugmelding for portal input `referentie` of kind `soort`: doorgestuurd (with the id
/// it got on the GZAC side) or afgewezen.
pub fn terugmelding(soort: Soort, referentie: &str, outcome: Result<&str, &Afwijzing>, now: Timestamp) -> Terugmelding {
    let (status, reden_code, toelichting, gzac_id) = match outcome {
        Ok(gzac_id) => (
            TerugmeldingStatus::Doorgestuurd,
            None,
            "Doorgestuurd naar de gemeente.".to_string(),
            Some(gzac_id.to_string()),
        ),
        Err(a) => (TerugmeldingStatus::Afgewezen, Some(a.code.to_string()), a.toelichting.clone(), None),
    };
    let soort_name = format!("{soort:?}");
    // Status and reason are part of the id: a rejection after a forward is another event.
    let status_name = format!("{status:?}");
    Terugmelding {
        id: derived_id(&["terugmelding", &soort_name, referentie, &status_name, reden_code.as_deref().unwrap_or("")]),
        referentie: referentie.to_string(),
        soort,
        status,
        reden_code,
        toelichting,
        gzac_id,
        tijdstip: now,
    }
}

/// SHA-256 (hex) of a record's JSON form: tells two contents apart, the same content again alike.
pub fn digest(record: &impl serde::Serialize) -> Result<String, RouteError> {
    let json = serde_json::to_vec(record).map_err(|e| RouteError::bug(format!("a record has no JSON form: {e}")))?;
    Ok(crate::events::sha256_hex(&json))
}

/// The CloudEvents type of every terugmelding: one type for the one Terugmelding schema (what
/// became of the input is in the record).
pub const TYPE_TERUGMELDING: &str = "nl.overheid.portaal.terugmelding-verstuurd";

/// A terugmelding as an output on `topic`, keyed and subjected by the portal's reference.
pub fn terugmelding_output(topic: &str, t: &Terugmelding) -> Output {
    Output::new(topic, t.referentie.clone(), t, record_event(TYPE_TERUGMELDING, &t.id, &t.referentie))
}

/// A euro amount as a decimal string (`147.43`, `12`): at most `max_euro_digits` digits before
/// the point and two after, never negative; normalised to two decimals.
pub fn bedrag(s: &str, max_euro_digits: usize) -> Result<String, Afwijzing> {
    let (euros, cents) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if euros.is_empty() || euros.len() > max_euro_digits || !digits(euros) || cents.len() > 2 || !digits(cents) {
        return Err(afwijzing("ONGELDIG_BEDRAG", "Het bedrag is geen bedrag in euro met hoogstens twee decimalen."));
    }
    let euros = match euros.trim_start_matches('0') {
        "" => "0",
        rest => rest,
    };
    Ok(format!("{euros}.{cents:0<2}"))
}

/// An Avro enum value's symbol as it is written (its serde name), e.g. `informatie_geven`.
pub fn symbol(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Where GZAC hears of berichten and taken the portal cannot take.
pub use crate::topics::GZAC_WEIGERINGEN as WEIGERINGEN;
/// The CloudEvents type of every weigering (one type for the one Weigering schema).
pub const TYPE_WEIGERING: &str = "nl.overheid.portaal.weigering-verstuurd";

/// GZAC's bericht or taak `referentie` could not be delivered to the portal, for reason `r`:
/// keyed and subjected by GZAC's uuid.
pub fn weigering_output(topic: &str, soort: WeigeringSoort, referentie: &str, r: &Afwijzing, now: Timestamp) -> Output {
    let w = Weigering {
        id: derived_id(&["weigering", &format!("{soort:?}"), referentie, r.code]),
        referentie: referentie.to_string(),
        soort,
        reden_code: r.code.to_string(),
        toelichting: r.toelichting.clone(),
        tijdstip: now,
    };
    Output::new(topic, w.referentie.clone(), &w, record_event(TYPE_WEIGERING, &w.id, &w.referentie))
}

/// Where GZAC hears that a klant was not reached digitally (send a letter).
pub use crate::topics::GZAC_NIET_BEREIKT as NIET_BEREIKT;
pub const TYPE_NIET_BEREIKT: &str = "nl.overheid.portaal.klant-niet-bereikt";

/// GZAC's bericht or taak `referentie` was left alone and no channel is left to remind the klant
/// on (`notified`: a first notificatie did go out): one per item.
pub fn niet_bereikt_output(
    topic: &str,
    soort: WeigeringSoort,
    referentie: &str,
    notified: bool,
    now: Timestamp,
) -> Output {
    let (code, toelichting) = if notified {
        ("GEEN_ANDER_KANAAL", "De klant is op elk bekend kanaal gewaarschuwd en reageert niet; stuur een brief.")
    } else {
        ("GEEN_KANAAL", "De klant heeft geen digitaal adres voor notificaties; stuur een brief.")
    };
    let n = NietBereikt {
        id: derived_id(&["niet-bereikt", &format!("{soort:?}"), referentie]),
        referentie: referentie.to_string(),
        soort,
        reden_code: code.to_string(),
        toelichting: toelichting.to_string(),
        tijdstip: now,
    };
    Output::new(topic, n.referentie.clone(), &n, record_event(TYPE_NIET_BEREIKT, &n.id, &n.referentie))
}

/// Decode a record of a repartition topic that carries two kinds: whichever reader schema the
/// writer's resolves to (Avro schema resolution, not the writer's full name) decides.
pub fn decode_either<A: serde::de::DeserializeOwned, B: serde::de::DeserializeOwned, T>(
    decoder: &Decoder<'_>,
    bytes: &[u8],
    (first, first_name): (&apache_avro::Schema, &str),
    (second, second_name): (&apache_avro::Schema, &str),
    as_first: fn(A) -> T,
    as_second: fn(B) -> T,
) -> Result<T, CodecError> {
    match decoder.avro(bytes, first) {
        Ok(a) => Ok(as_first(a)),
        Err(CodecError::BadData { message: as_a, .. }) => match decoder.avro(bytes, second) {
            Ok(b) => Ok(as_second(b)),
            Err(CodecError::BadData { class, message }) => Err(CodecError::BadData {
                class,
                message: format!("neither a {first_name} ({as_a}) nor an {second_name} ({message})"),
            }),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// A portal party checked (elfproef, 8-digit KVK) and named as GZAC names it: its URN.
pub fn gzac_urn(p: &portaal::Partij) -> Result<String, Afwijzing> {
    match p.soort {
        portaal::PartijType::Bsn if elfproef(&p.value) => Ok(bsn_urn(&p.value)),
        portaal::PartijType::Bsn => Err(afwijzing("ONGELDIG_BSN", "Het BSN is ongeldig (elfproef).")),
        portaal::PartijType::Kvk if is_kvk(&p.value) => Ok(kvk_urn(&p.value)),
        portaal::PartijType::Kvk => Err(afwijzing("ONGELDIG_KVK", "Een KVK-nummer bestaat uit 8 cijfers.")),
        portaal::PartijType::Rsin if elfproef(&p.value) => Ok(rsin_urn(&p.value)),
        portaal::PartijType::Rsin => Err(afwijzing("ONGELDIG_RSIN", "Het RSIN is ongeldig (elfproef).")),
    }
}

/// The portal's identification of the party a GZAC URN names. An organisation is addressed by
/// its KVK number, also when GZAC names one vestiging (the portal's eHerkenning login is per KVK
/// number), or by its RSIN. What the portal cannot address is refused with the reason.
pub fn portaal_ontvanger(urn: &str) -> Result<portaal::Partij, Afwijzing> {
    let partij = |soort, value: String| portaal::Partij { soort, value };
    match parse_urn(urn) {
        Ok(Urn::Bsn(bsn)) => Ok(partij(portaal::PartijType::Bsn, bsn)),
        Ok(Urn::Kvk { kvk, .. }) => Ok(partij(portaal::PartijType::Kvk, kvk)),
        Ok(Urn::Rsin(rsin)) => Ok(partij(portaal::PartijType::Rsin, rsin)),
        Err(why) => {
            Err(afwijzing("ONBEKENDE_ONTVANGER", format!("Het portaal kan deze ontvanger niet bereiken: {why}.")))
        }
    }
}

/// The lookup key of a party in the klantvoorkeuren table, e.g. `bsn:…`. Only in memory.
pub fn partij_key(p: &portaal::Partij) -> String {
    format!("{:?}:{}", p.soort, p.value).to_lowercase()
}
