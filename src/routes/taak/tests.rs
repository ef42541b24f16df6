use super::*;
use crate::model::Datum;
use crate::tools::samples::{antwoord, betaaltaak, betaling, taak, BSN, OTHER_BSN};

const T: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e21";

fn state(t: gzac::ExterneTaak, beantwoord: bool) -> TaakState {
    TaakState::held(t, beantwoord, Timestamp(0))
}

#[test]
fn details_travel_as_an_avro_union() {
    let schema = gzac::ExterneTaak::get_schema();
    for t in [taak(T, BSN, Datum(20_000)), betaaltaak(T, BSN, Datum(20_000))] {
        #[allow(deprecated)]
        let bytes = apache_avro::to_avro_datum(&schema, apache_avro::to_value(&t).unwrap()).unwrap();
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).unwrap();
        assert_eq!(apache_avro::from_value::<gzac::ExterneTaak>(&v).unwrap(), t);
    }
}

#[test]
fn antwoord_rules() {
    let open = state(taak(T, BSN, Datum(20_000)), false);
    let code = |s: Option<&TaakState>, a: &portaal::TaakAntwoord| check(s, a).unwrap_err().code;
    assert_eq!(code(None, &antwoord("a", T, BSN)), "ONBEKENDE_TAAK");
    assert_eq!(code(Some(&open), &antwoord("a", T, OTHER_BSN)), "NIET_TOEGEWEZEN");
    let closed = state(gzac::ExterneTaak { status: gzac::TaakStatus::Afgebroken, ..open.taak.clone() }, false);
    assert_eq!(code(Some(&closed), &antwoord("a", T, BSN)), "TAAK_NIET_OPEN");
    assert_eq!(code(Some(&state(open.taak.clone(), true)), &antwoord("a", T, BSN)), "TAAK_AL_BEANTWOORD");
    let mut niet_af = antwoord("a", T, BSN);
    niet_af.taak.status = portaal::TaakStatus::Open;
    assert_eq!(code(Some(&open), &niet_af), "TAAK_NIET_AFGEROND");
    let g = check(Some(&open), &antwoord("a", T, BSN)).unwrap();
    assert_eq!(g.status, gzac::TaakStatus::Uitgevoerd);
    let gzac::Details::Formuliertaak(f) = &g.details else { panic!("still a formuliertaak") };
    assert_eq!(f.ontvangen_gegevens, antwoord("a", T, BSN).taak.portaalformulier.unwrap().verzonden_data);
    // A betaaltaak is done when the payment provider confirmed it.
    let betaal = state(betaaltaak(T, BSN, Datum(20_000)), false);
    assert_eq!(check(Some(&betaal), &betaling("a", T, BSN)).unwrap().status, gzac::TaakStatus::Uitgevoerd);
    let unpaid = portaal::TaakAntwoord { betaalreferentie: None, ..betaling("a", T, BSN) };
    assert_eq!(code(Some(&betaal), &unpaid), "GEEN_BETAALREFERENTIE");
}

#[test]
fn redelivered_records_reopen_nothing_and_repeat_the_first_answer() {
    let mut route = TaakRoute::new(&Config::defaults(), Arc::new(GlobalTable::fixed(vec![])));
    let mut store = crate::state::Store::default().scheduled(route.schedule().unwrap());
    let dag = Datum(20_000);
    let now = Timestamp(dag.einde().0 - 86_400_000); // the day before the last day
    let mut ctx = Ctx { now, partition: 0, state: &mut store, link: None };
    let topics = |o: &[Output]| o.iter().map(|o| o.topic.clone()).collect::<Vec<_>>();
    let open = taak(T, BSN, dag);
    assert!(!route.handle(TaakInput::Taak(open.clone()), &mut ctx).unwrap().is_empty());
    let a = antwoord("a", T, BSN);
    let first = route.handle(TaakInput::Antwoord(a.clone()), &mut ctx).unwrap();
    assert_eq!(topics(&first), [GZAC_ANTWOORDEN, PORTAAL_TAKEN, TERUGMELDINGEN]);

    // GZAC's outbox sends the open taak again: the answered taak stays answered.
    assert!(route.handle(TaakInput::Taak(open.clone()), &mut ctx).unwrap().is_empty());
    assert_eq!(ctx.get(T).unwrap().taak.status, gzac::TaakStatus::Uitgevoerd);
    // The portal sends the antwoord again: the same terugmelding, nothing to GZAC.
    let again = route.handle(TaakInput::Antwoord(a), &mut ctx).unwrap();
    assert_eq!(topics(&again), [TERUGMELDINGEN]);
    assert_eq!(again[0].event.id, first[2].event.id);
    // A second, different antwoord is still refused.
    let second = antwoord("b", T, BSN);
    let refused = route.handle(TaakInput::Antwoord(second), &mut ctx).unwrap();
    assert_ne!(refused[0].event.id, first[2].event.id);

    // Past its last day the answered taak is not expired.
    ctx.now = Timestamp(dag.einde().0 + 1);
    assert!(route.tick(&mut ctx).unwrap().is_empty());

    // An open taak that expired, then sent again: not reopened, not expired a second time.
    let other = "9a6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e22";
    ctx.now = now;
    route.handle(TaakInput::Taak(taak(other, BSN, dag)), &mut ctx).unwrap();
    ctx.now = Timestamp(dag.einde().0 + 1);
    let expired = route.tick(&mut ctx).unwrap();
    assert_eq!(topics(&expired), [PORTAAL_TAKEN, GZAC_ANTWOORDEN]);
    assert!(route.handle(TaakInput::Taak(taak(other, BSN, dag)), &mut ctx).unwrap().is_empty());
    assert!(route.tick(&mut ctx).unwrap().is_empty(), "expired once");
    // GZAC's own later change (afgebroken) still reaches the portal.
    let afgebroken = gzac::ExterneTaak { status: gzac::TaakStatus::Afgebroken, ..taak(other, BSN, dag) };
    assert_eq!(topics(&route.handle(TaakInput::Taak(afgebroken), &mut ctx).unwrap()), [PORTAAL_TAKEN]);
}

/// 1,000 taken due at once, one of them no longer translatable for the portal: every one is
/// closed for GZAC, 999 in the portal, and the one the portal cannot take is a weigering.
#[test]
fn one_poisoned_taak_among_a_thousand_due_does_not_hold_up_the_others() {
    let mut route = TaakRoute::new(&Config::defaults(), Arc::new(GlobalTable::fixed(vec![])));
    let mut store = crate::state::Store::default().scheduled(route.schedule().unwrap());
    let dag = Datum(20_000);
    for i in 0..1000 {
        let mut t = taak(&format!("t-{i}"), BSN, dag);
        if i == 500 {
            t.is_toegewezen_aan = "urn:nld:klant:klantnummer:1".into(); // the portal cannot address it
        }
        store.put(i % 3, &t.uuid.clone(), Some(state(t, false)));
    }
    store.committed();
    let mut ctx = Ctx { now: Timestamp(dag.einde().0 + 1), partition: -1, state: &mut store, link: None };
    let out = route.tick(&mut ctx).unwrap();
    let count = |topic: &str| out.iter().filter(|o| o.topic == topic).count();
    assert_eq!(count(GZAC_ANTWOORDEN), 1000);
    assert_eq!(count(PORTAAL_TAKEN), 999);
    assert_eq!(count(super::super::WEIGERINGEN), 1);
    assert!(route.tick(&mut ctx).unwrap().is_empty(), "each once");
}

#[test]
fn a_taak_past_its_last_day_is_not_announced() {
    let mut route = TaakRoute::new(&Config::defaults(), Arc::new(GlobalTable::fixed(vec![])));
    let mut store = crate::state::Store::default().scheduled(route.schedule().unwrap());
    let dag = Datum(20_000);
    let mut ctx = Ctx { now: Timestamp(dag.einde().0 + 1), partition: 0, state: &mut store, link: None };
    let out = route.handle(TaakInput::Taak(taak(T, BSN, dag)), &mut ctx).unwrap();
    assert!(out.iter().all(|o| o.topic == PORTAAL_TAKEN), "no notificatie: {out:?}");
}
