//! Bezorging (delivery): the last stage before `notificaties.opdrachten.v1`. Notificaties arrive
//! keyed by klant, so one instance holds each klant's postvak per channel in its state:
//! - quiet hours: a notificatie on a held channel due inside them waits until they end;
//! - digests: the notificaties in a window after the first become one when there are several.
//!
//! What waits lives in the changelog with the moment it goes out; `tick` sends it then, in the
//! same transaction that removes it, so it goes out once through crashes and rebalances.

use super::notificatie::{ESCALATIE_BERICHT, ESCALATIE_TAAK, INTERN, TOPIC, TYPE};
use super::{derived_id, event};
use crate::codec::CodecError;
use crate::config::{Config, NotificatieConfig};
use crate::events::Link;
use crate::model::common::{Kanaal, NotificatieVerzoek, Notificatieopdracht, NotifyRequest};
use crate::model::Timestamp;
use crate::pipeline::{Ctx, Decoder, Output, Route, RouteError};
use apache_avro::{AvroSchema, Schema};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub use crate::topics::NOTIFICATIES_STATE as CHANGELOG;
/// The `gebeurtenis` of a digest.
pub const BUNDEL: &str = "bundel";

/// A notificatie held until `uit_op`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wachtend {
    pub verzoek: NotificatieVerzoek,
    pub uit_op: Timestamp,
    /// Part of a digest window (else held for quiet hours only).
    pub bundel: bool,
    pub link: Option<Link>,
}

/// One klant's notificaties on one channel, keyed `<klant>/<kanaal>`: what waits, and the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Postvak {
    pub wachtend: Vec<Wachtend>,
    /// When the digest window now open closes.
    pub venster_tot: Option<Timestamp>,
    /// Ids sent, as entries written before each got one of its own (`Entry::Verzonden`): still
    /// honoured, never added to, gone after `state_retention` (a klant with many notificaties
    /// made this list, and every change of it, grow with what was sent).
    pub verzonden: Vec<(String, Timestamp)>,
}

/// The route's state entries: a klant's postvak per channel, and one entry per notificatie sent
/// (`<klant>/<kanaal>#<id>`), so that a replay sends nothing while what a change costs stays flat
/// however much a klant was sent. Untagged: entries of the old form read as a `Postvak`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Postvak(Postvak),
    /// Sent at this moment. Kept as long as the internal topic keeps the records it could be read
    /// again from (at most `state_retention`).
    Verzonden {
        verzonden_op: Timestamp,
    },
}

fn sent_key(postvak: &str, id: &str) -> String {
    format!("{postvak}#{id}")
}

pub struct BezorgingRoute {
    input: String,
    output: String,
    changelog: String,
    cfg: NotificatieConfig,
    /// Quiet hours as minutes after local midnight.
    stil: Option<(i32, i32)>,
    /// How long ids sent are kept: see `Postvak::verzonden`.
    retention: std::time::Duration,
    reader: Schema,
}

/// The internal topic's retention in the topic contract: a notificatie can only be read again
/// (a rebalance, a restore) while the topic keeps it, so that is how long its id must be known.
fn intern_retention() -> std::time::Duration {
    let wanted = crate::topology::Topology::load().and_then(|t| t.wanted(""));
    let ms = wanted.ok().and_then(|w| w.into_iter().find(|w| w.name == INTERN)).map_or(-1, |w| w.retention_ms);
    if ms > 0 {
        std::time::Duration::from_millis(ms as u64)
    } else {
        std::time::Duration::MAX
    }
}

impl BezorgingRoute {
    pub fn new(cfg: &Config) -> Self {
        BezorgingRoute {
            input: cfg.topic(INTERN),
            output: cfg.topic(TOPIC),
            changelog: cfg.topic(CHANGELOG),
            stil: cfg.notificaties.stille_uren.as_ref().and_then(|s| s.minuten().ok()),
            cfg: cfg.notificaties.clone(),
            retention: cfg.pipeline.state_retention.min(intern_retention()),
            reader: NotificatieVerzoek::get_schema(),
        }
    }

    /// When quiet hours let `o` go out at or after `t`: `t` itself, or the end of the quiet
    /// hours `t` falls in.
    pub fn na_stilte(&self, o: &Notificatieopdracht, t: Timestamp) -> Timestamp {
        let (Some((van, tot)), Some(s)) = (self.stil, &self.cfg.stille_uren) else { return t };
        if !s.kanalen.contains(&o.kanaal) || s.uitgezonderd.contains(&o.gebeurtenis) {
            return t;
        }
        let m = t.minuut_van_de_dag();
        let stil = if van < tot { (van..tot).contains(&m) } else { m >= van || m < tot };
        if stil {
            t.volgende(tot)
        } else {
            t
        }
    }

    /// An escalation never goes out before the first notice of the same item: when the klant's
    /// other channel still holds one about it (in a digest window, in quiet hours), not before
    /// that goes out. Both postvakken are the klant's, so in the same partition.
    fn eerste_bericht_uit(&self, ctx: &Ctx<'_, Entry>, v: &NotificatieVerzoek) -> Timestamp {
        [Kanaal::Email, Kanaal::Sms]
            .into_iter()
            .filter(|k| *k != v.opdracht.kanaal)
            .filter_map(|k| match ctx.get(&format!("{}/{k:?}", v.klant).to_lowercase()) {
                Some(Entry::Postvak(p)) => Some(p),
                _ => None,
            })
            .flat_map(|p| &p.wachtend)
            .filter(|w| w.verzoek.opdracht.referentie == v.opdracht.referentie)
            .map(|w| w.uit_op)
            .max()
            .unwrap_or(Timestamp(0))
    }

    fn bundelt(&self, o: &Notificatieopdracht) -> bool {
        let b = &self.cfg.bundel;
        !b.venster.is_zero() && b.kanalen.contains(&o.kanaal) && b.gebeurtenissen.contains(&o.gebeurtenis)
    }

    /// The opdracht as sent at `now` (a held one carries the moment it went out).
    fn send(&self, o: &Notificatieopdracht, now: Timestamp) -> Output {
        let o = Notificatieopdracht { tijdstip: now, ..o.clone() };
        Output::new(&self.output, o.id.clone(), &o, event(TYPE, &o.id))
    }

    /// One notificatie for several: the digest template in the klant's language, the number
    /// and a link to the portal's overview; its id derives from the ids it replaces.
    fn digest(
        &self,
        klant: &str,
        kanaal: Kanaal,
        items: &[&NotificatieVerzoek],
        now: Timestamp,
    ) -> Notificatieopdracht {
        let mut ids: Vec<&str> = items.iter().map(|v| v.opdracht.id.as_str()).collect();
        ids.sort_unstable();
        let id = derived_id(&["bundel", klant, &format!("{kanaal:?}"), &ids.join(",")]);
        let latest = items[items.len() - 1];
        let soort = |s: &str| {
            items.iter().all(|v| v.opdracht.request.personalisation.get("soort").map(String::as_str) == Some(s))
        };
        let wat = if soort("bericht") {
            "berichten"
        } else if soort("taak") {
            "taken"
        } else {
            "berichten en taken"
        };
        let personalisation = HashMap::from([
            ("link".to_string(), self.cfg.portaal_url.trim_end_matches('/').to_string()),
            ("aantal".to_string(), items.len().to_string()),
            ("soort".to_string(), wat.to_string()),
        ]);
        Notificatieopdracht {
            id: id.clone(),
            kanaal,
            referentie: items.iter().map(|v| v.opdracht.referentie.as_str()).collect::<Vec<_>>().join(","),
            gebeurtenis: BUNDEL.into(),
            tijdstip: now,
            request: NotifyRequest {
                template_id: self.cfg.templates.bundel.get(kanaal, latest.voorkeurstaal.as_deref()).to_string(),
                email_address: latest.opdracht.request.email_address.clone(),
                phone_number: latest.opdracht.request.phone_number.clone(),
                personalisation,
                reference: id,
            },
        }
    }

    /// Send what is due in `p` at `now`: a digest of the bundled ones when there are several,
    /// the rest one by one. `sent` gets the ids that went out.
    fn release(&self, key: &str, p: &mut Postvak, now: Timestamp, sent: &mut Vec<String>) -> Vec<Output> {
        let (due, rest): (Vec<Wachtend>, Vec<Wachtend>) =
            std::mem::take(&mut p.wachtend).into_iter().partition(|w| w.uit_op <= now);
        p.wachtend = rest;
        let mut out = Vec::new();
        let (bundled, single): (Vec<&Wachtend>, Vec<&Wachtend>) = due.iter().partition(|w| w.bundel);
        let link = due.first().and_then(|w| w.link.as_ref());
        if bundled.len() > 1 {
            let klant = key.rsplit_once('/').map_or(key, |(k, _)| k);
            let items: Vec<&NotificatieVerzoek> = bundled.iter().map(|w| &w.verzoek).collect();
            let d = self.digest(klant, bundled[0].verzoek.opdracht.kanaal, &items, now);
            tracing::info!(notificatie = %d.id, aantal = items.len(), "digest sent");
            out.push(self.send(&d, now).caused_by(link));
        } else {
            for w in bundled {
                out.push(self.send(&w.verzoek.opdracht, now).caused_by(w.link.as_ref()));
            }
        }
        for w in single {
            out.push(self.send(&w.verzoek.opdracht, now).caused_by(w.link.as_ref()));
        }
        sent.extend(due.iter().map(|w| w.verzoek.opdracht.id.clone()));
        if p.venster_tot.is_some_and(|t| t <= now) {
            p.venster_tot = None;
        }
        out
    }
}

impl Route for BezorgingRoute {
    type Input = NotificatieVerzoek;
    type State = Entry;

    fn name(&self) -> &'static str {
        "bezorging"
    }
    fn input_topic(&self) -> &str {
        &self.input
    }
    fn outputs(&self) -> Vec<(String, Schema)> {
        vec![(self.output.clone(), Notificatieopdracht::get_schema())]
    }
    fn changelog(&self) -> Option<&str> {
        Some(&self.changelog)
    }
    fn decode(&self, decoder: &Decoder<'_>, bytes: &[u8]) -> Result<NotificatieVerzoek, CodecError> {
        decoder.avro(bytes, &self.reader)
    }

    fn handle(&mut self, v: NotificatieVerzoek, ctx: &mut Ctx<'_, Entry>) -> Result<Vec<Output>, RouteError> {
        super::required("klant", &v.klant)?;
        super::required("id", &v.opdracht.id)?;
        let key = format!("{}/{:?}", v.klant, v.opdracht.kanaal).to_lowercase();
        let (mut p, had_postvak) = match ctx.get(&key) {
            Some(Entry::Postvak(p)) => (p.clone(), true),
            _ => (Postvak::default(), false),
        };
        let id = &v.opdracht.id;
        let replay = ctx.get(&sent_key(&key, id)).is_some()
            || p.verzonden.iter().any(|(s, _)| s == id)
            || p.wachtend.iter().any(|w| &w.verzoek.opdracht.id == id);
        if replay {
            return Ok(vec![]);
        }
        let now = ctx.now;
        // A window that closed since the last tick goes out first; this one opens a new window.
        let mut sent = Vec::new();
        let mut out =
            if p.venster_tot.is_some_and(|t| t <= now) { self.release(&key, &mut p, now, &mut sent) } else { vec![] };
        let bundel = self.bundelt(&v.opdracht);
        let mut uit_op = now;
        if bundel {
            uit_op = *p.venster_tot.get_or_insert(now.plus(self.cfg.bundel.venster));
        }
        if [ESCALATIE_BERICHT, ESCALATIE_TAAK].contains(&v.opdracht.gebeurtenis.as_str()) {
            uit_op = uit_op.max(self.eerste_bericht_uit(ctx, &v));
        }
        let uit_op = self.na_stilte(&v.opdracht, uit_op);
        if uit_op <= now {
            sent.push(id.clone());
            out.push(self.send(&v.opdracht, now));
        } else {
            tracing::info!(notificatie = %id, at = %uit_op.rfc3339(), bundel, "notificatie held");
            p.wachtend.push(Wachtend { verzoek: v, uit_op, bundel, link: ctx.link.cloned() });
        }
        for id in sent {
            ctx.put(&sent_key(&key, &id), Some(Entry::Verzonden { verzonden_op: now }));
        }
        let empty = p.wachtend.is_empty() && p.venster_tot.is_none() && p.verzonden.is_empty();
        if had_postvak || !empty {
            ctx.put(&key, (!empty).then_some(Entry::Postvak(p)));
        }
        Ok(out)
    }

    /// Send what has come due (windows closed, quiet hours over); forget sent ids after
    /// `state_retention`, and a postvak with nothing left.
    /// The first of: a held notificatie's moment, the digest window's end, the oldest id sent
    /// being forgotten.
    fn schedule(&self) -> Option<crate::state::Schedule<Entry>> {
        let retention = self.retention;
        Some(std::sync::Arc::new(move |e: &Entry| match e {
            Entry::Postvak(p) => {
                let held = p.wachtend.iter().map(|w| w.uit_op).min();
                let forget = p.verzonden.iter().map(|(_, t)| t.plus(retention)).min();
                [held, p.venster_tot, forget].into_iter().flatten().min()
            }
            Entry::Verzonden { verzonden_op } => Some(verzonden_op.plus(retention)),
        }))
    }

    fn tick(&mut self, ctx: &mut Ctx<'_, Entry>) -> Result<Vec<Output>, RouteError> {
        let now = ctx.now;
        let forget_before = now.minus(self.retention);
        let mut out = Vec::new();
        for (partition, key, entry) in ctx.state.due(now) {
            let Entry::Postvak(mut p) = entry else {
                ctx.state.put(partition, &key, None); // a sent id, kept long enough
                continue;
            };
            let mut sent = Vec::new();
            out.extend(self.release(&key, &mut p, now, &mut sent));
            for id in sent {
                ctx.state.put(partition, &sent_key(&key, &id), Some(Entry::Verzonden { verzonden_op: now }));
            }
            p.verzonden.retain(|(_, t)| *t >= forget_before);
            let empty = p.wachtend.is_empty() && p.venster_tot.is_none() && p.verzonden.is_empty();
            ctx.state.put(partition, &key, (!empty).then_some(Entry::Postvak(p)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StilleUren;

    fn route(stil: bool, venster: u64) -> BezorgingRoute {
        let mut cfg = Config::defaults();
        if stil {
            cfg.notificaties.stille_uren = Some(StilleUren {
                van: "21:00".into(),
                tot: "08:00".into(),
                kanalen: vec![Kanaal::Sms],
                uitgezonderd: vec!["taak-escalatie".into()],
            });
        }
        cfg.notificaties.bundel.venster = std::time::Duration::from_secs(venster);
        BezorgingRoute::new(&cfg)
    }

    fn opdracht(kanaal: Kanaal, gebeurtenis: &str) -> Notificatieopdracht {
        Notificatieopdracht {
            id: "n".into(),
            kanaal,
            referentie: "b".into(),
            gebeurtenis: gebeurtenis.into(),
            tijdstip: Timestamp(0),
            request: NotifyRequest {
                template_id: "t".into(),
                email_address: None,
                phone_number: Some("+31612345678".into()),
                personalisation: HashMap::new(),
                reference: "n".into(),
            },
        }
    }

    #[test]
    fn quiet_hours_are_amsterdam_hours_over_midnight() {
        let r = route(true, 0);
        let sms = opdracht(Kanaal::Sms, "bericht-gepubliceerd");
        let at = |s: &str| Timestamp::parse(s).unwrap();
        // 22:30 in winter (UTC+1) waits until 08:00 the next morning; so does 03:00.
        assert_eq!(r.na_stilte(&sms, at("2026-12-02T22:30:00+01:00")), at("2026-12-03T08:00:00+01:00"));
        assert_eq!(r.na_stilte(&sms, at("2026-12-03T03:00:00+01:00")), at("2026-12-03T08:00:00+01:00"));
        // Summer time: 21:00 local is 19:00 UTC.
        assert_eq!(r.na_stilte(&sms, at("2026-07-01T21:00:00+02:00")), at("2026-07-02T08:00:00+02:00"));
        // Outside them, email, and an exempt kind go at once.
        assert_eq!(r.na_stilte(&sms, at("2026-12-02T20:59:59+01:00")), at("2026-12-02T20:59:59+01:00"));
        assert_eq!(r.na_stilte(&sms, at("2026-12-03T08:00:00+01:00")), at("2026-12-03T08:00:00+01:00"));
        let email = opdracht(Kanaal::Email, "bericht-gepubliceerd");
        assert_eq!(r.na_stilte(&email, at("2026-12-02T23:00:00+01:00")), at("2026-12-02T23:00:00+01:00"));
        let urgent = opdracht(Kanaal::Sms, "taak-escalatie");
        assert_eq!(r.na_stilte(&urgent, at("2026-12-02T23:00:00+01:00")), at("2026-12-02T23:00:00+01:00"));
        assert_eq!(route(false, 0).na_stilte(&sms, at("2026-12-02T23:00:00+01:00")), at("2026-12-02T23:00:00+01:00"));
    }

    fn verzoek(id: &str, kanaal: Kanaal) -> NotificatieVerzoek {
        let mut o = opdracht(kanaal, "bericht-gepubliceerd");
        o.id = id.into();
        o.request.personalisation.insert("soort".into(), "bericht".into());
        NotificatieVerzoek { klant: "k".into(), voorkeurstaal: None, opdracht: o }
    }

    /// What `r` sends at `now` for `input` (or its tick without one), against `store`.
    fn at_time(
        r: &mut BezorgingRoute,
        store: &mut crate::state::Store<Entry>,
        now: &str,
        input: Option<NotificatieVerzoek>,
    ) -> Vec<String> {
        let mut ctx = Ctx { now: Timestamp::parse(now).unwrap(), partition: 0, state: store, link: None };
        let out = match input {
            Some(v) => r.handle(v, &mut ctx).unwrap(),
            None => r.tick(&mut ctx).unwrap(),
        };
        out.into_iter().map(|o| o.key).collect()
    }

    #[test]
    fn held_notificaties_go_out_once_when_their_time_comes() {
        let mut r = route(true, 60);
        r.cfg.bundel.kanalen = vec![Kanaal::Email];
        let mut store = crate::state::Store::default().scheduled(r.schedule().unwrap());
        // Three emails in one window: nothing until it closes, then one digest, then nothing.
        for id in ["e1", "e2", "e3"] {
            assert!(
                at_time(&mut r, &mut store, "2027-03-01T10:00:10+01:00", Some(verzoek(id, Kanaal::Email))).is_empty()
            );
        }
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:01:00+01:00", None).is_empty());
        let digest = at_time(&mut r, &mut store, "2027-03-01T10:01:10+01:00", None);
        assert_eq!(digest.len(), 1);
        assert!(!["e1", "e2", "e3"].contains(&digest[0].as_str()), "a digest has an id of its own");
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:02:00+01:00", None).is_empty());
        // A replay of one of them sends nothing; a lone email in a new window goes out as itself.
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:03:00+01:00", Some(verzoek("e2", Kanaal::Email))).is_empty());
        at_time(&mut r, &mut store, "2027-03-01T10:04:00+01:00", Some(verzoek("e4", Kanaal::Email)));
        assert_eq!(at_time(&mut r, &mut store, "2027-03-01T10:05:00+01:00", None), ["e4"]);
        // An SMS at night waits for 08:00, goes out once, then never again.
        assert!(at_time(&mut r, &mut store, "2027-03-01T22:00:00+01:00", Some(verzoek("s1", Kanaal::Sms))).is_empty());
        assert!(at_time(&mut r, &mut store, "2027-03-02T07:59:59+01:00", None).is_empty());
        assert_eq!(at_time(&mut r, &mut store, "2027-03-02T08:00:00+01:00", None), ["s1"]);
        assert!(at_time(&mut r, &mut store, "2027-03-02T08:00:01+01:00", None).is_empty());
        // By day an SMS goes at once.
        assert_eq!(at_time(&mut r, &mut store, "2027-03-02T12:00:00+01:00", Some(verzoek("s2", Kanaal::Sms))), ["s2"]);
    }

    #[test]
    fn an_escalation_never_goes_out_before_the_first_notice_of_its_bericht() {
        let mut r = route(false, 60);
        r.cfg.bundel.kanalen = vec![Kanaal::Email];
        let mut store = crate::state::Store::default().scheduled(r.schedule().unwrap());
        // The first email waits in its digest window; the escalation by SMS for the same bericht
        // (its moment already passed) waits with it, then both go.
        let mut first = verzoek("e1", Kanaal::Email);
        first.opdracht.referentie = "b-1".into();
        let mut escalatie = verzoek("s-esc", Kanaal::Sms);
        escalatie.opdracht.gebeurtenis = ESCALATIE_BERICHT.into();
        escalatie.opdracht.referentie = "b-1".into();
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:00:00+01:00", Some(first)).is_empty());
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:00:01+01:00", Some(escalatie)).is_empty());
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:00:30+01:00", None).is_empty());
        let mut both = at_time(&mut r, &mut store, "2027-03-01T10:01:00+01:00", None);
        both.sort();
        assert_eq!(both, ["e1", "s-esc"]);
        // An escalation about another bericht does not wait.
        let mut other = verzoek("s-2", Kanaal::Sms);
        other.opdracht.gebeurtenis = ESCALATIE_BERICHT.into();
        other.opdracht.referentie = "b-2".into();
        assert_eq!(at_time(&mut r, &mut store, "2027-03-01T10:02:00+01:00", Some(other)), ["s-2"]);
    }

    #[test]
    fn what_a_klant_was_sent_never_makes_its_state_grow() {
        let mut r = route(false, 0);
        let mut store = crate::state::Store::default().scheduled(r.schedule().unwrap());
        // An entry of the old form: its ids sent are still honoured.
        let old = Postvak { verzonden: vec![("oud".into(), Timestamp(0))], ..Postvak::default() };
        store.put(0, "k/email", Some(Entry::Postvak(old)));
        assert!(
            at_time(&mut r, &mut store, "2027-03-01T10:00:00+01:00", Some(verzoek("oud", Kanaal::Email))).is_empty()
        );
        for i in 0..500 {
            let id = format!("n{i}");
            assert_eq!(
                at_time(&mut r, &mut store, "2027-03-01T10:00:00+01:00", Some(verzoek(&id, Kanaal::Email))),
                [id]
            );
        }
        // Each change writes one small entry, however much was sent before.
        let largest = store.take_pending().iter().filter_map(|(_, _, v)| v.as_ref().map(Vec::len)).max().unwrap();
        assert!(largest < 300, "a state entry of {largest} bytes");
        assert!(at_time(&mut r, &mut store, "2027-03-01T10:00:00+01:00", Some(verzoek("n7", Kanaal::Email))).is_empty());
    }

    #[test]
    fn a_digest_says_how_many_and_where_never_what() {
        let r = route(false, 600);
        let mut items = Vec::new();
        for (i, soort) in ["bericht", "bericht", "taak"].iter().enumerate() {
            let mut o = opdracht(Kanaal::Sms, "bericht-gepubliceerd");
            o.id = format!("n{i}");
            o.request.personalisation.insert("soort".into(), soort.to_string());
            o.request.personalisation.insert("link".into(), format!("https://mijn.gemeente.example/berichten/{i}"));
            items.push(NotificatieVerzoek { klant: "k".into(), voorkeurstaal: None, opdracht: o });
        }
        let refs: Vec<&NotificatieVerzoek> = items.iter().collect();
        let d = r.digest("k", Kanaal::Sms, &refs, Timestamp(0));
        let mut keys: Vec<&String> = d.request.personalisation.keys().collect();
        keys.sort();
        assert_eq!(keys, ["aantal", "link", "soort"]);
        assert_eq!(
            (d.request.personalisation["aantal"].as_str(), d.request.personalisation["soort"].as_str()),
            ("3", "berichten en taken")
        );
        assert_eq!(d.request.template_id, Config::defaults().notificaties.templates.bundel.sms["nld"]);
        // The same items in another order are the same digest.
        let reversed: Vec<&NotificatieVerzoek> = items.iter().rev().collect();
        assert_eq!(r.digest("k", Kanaal::Sms, &reversed, Timestamp(0)).id, d.id);
    }
}
