//! Hostile input: mutated records (bit flips, truncations, huge lengths, garbage, extreme dates,
//! values nested far deeper than any stack) through every route's `decode` and `handle`, with no
//! Kafka in between. Nothing may panic, overflow the stack or be taken for a registry outage.

use apache_avro::AvroSchema;
use gzac_portal_bridge::codec::{Codec, CodecError, MAX_RECURSIVE_BODY, STACK_BYTES};
use gzac_portal_bridge::config::Config;
use gzac_portal_bridge::model::{gzac, portaal, Datum, Timestamp};
use gzac_portal_bridge::pipeline::{Ctx, Decoder, Route};
use gzac_portal_bridge::routes::bericht::BerichtRoute;
use gzac_portal_bridge::routes::repartition::Repartition;
use gzac_portal_bridge::routes::taak::{self, TaakRoute};
use gzac_portal_bridge::routes::verzoek::VerzoekRoute;
use gzac_portal_bridge::routes::zaakverzoek::ZaakVerzoekRoute;
use gzac_portal_bridge::state::Store;
use gzac_portal_bridge::table::GlobalTable;
use gzac_portal_bridge::tools::registry::Registry;
use gzac_portal_bridge::tools::samples;
use gzac_portal_bridge::{client, schemas};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tokio::runtime::Handle;

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of a framed record; the 5-byte header is left alone but now and then.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    let from = if rng.below(200) == 0 { 0 } else { 5.min(b.len()) };
    let at = |rng: &mut Rng, len: usize| from + rng.below(len.saturating_sub(from) + 1);
    match rng.below(6) {
        0 | 1 => {
            for _ in 0..=rng.below(8) {
                if b.len() > from {
                    let i = from + rng.below(b.len() - from);
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => b.truncate(at(rng, valid.len())),
        3 => {
            // A length or count prefix of about 2^62 (zigzag varint).
            let i = at(rng, b.len()).min(b.len());
            let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
            b.splice(i..i, huge);
        }
        4 => {
            let i = at(rng, b.len()).min(b.len());
            let garbage: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            b.splice(i..i, garbage);
        }
        _ => {
            let i = at(rng, b.len()).min(b.len());
            b.truncate(i);
            b.extend((0..rng.below(32)).map(|_| rng.next() as u8));
        }
    }
    b
}

/// A klantvoorkeuren table on no broker: it stays empty, which is all these routes need here.
fn empty_voorkeuren(cfg: &Config, rt: &Handle) -> Arc<GlobalTable<portaal::Klantvoorkeur>> {
    let lookup = |v: &portaal::Klantvoorkeur| v.partij.value.clone();
    GlobalTable::start(cfg, &["fz.voorkeuren".into()], portaal::Klantvoorkeur::get_schema(), lookup, rt.clone())
        .unwrap()
        .remove(0)
}

#[derive(Default, Debug)]
struct Tally {
    calls: usize,
    decoded: usize,
    handled_ok: usize,
    panics: Vec<String>,
    transient: Vec<String>,
}

/// Feed `inputs` (each also mutated `rounds` times) through `route`'s decode and handle.
fn feed<R: Route>(mut route: R, codec: &Codec, rt: &Handle, inputs: &[Vec<u8>], rounds: usize, seed: u64) -> Tally {
    let mut rng = Rng(seed);
    // Scheduled like the pipeline's: the time index sees every hostile value handle stores.
    let mut store: Store<R::State> = Store::default();
    if let Some(schedule) = route.schedule() {
        store = store.scheduled(schedule);
    }
    let mut tally = Tally::default();
    for valid in inputs {
        for round in 0..=rounds {
            let bytes = if round == 0 { valid.clone() } else { mutate(&mut rng, valid) };
            tally.calls += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| match route.decode(&Decoder::new(codec, rt), &bytes) {
                Ok(input) => {
                    let mut ctx = Ctx { now: Timestamp::now(), partition: 0, state: &mut store, link: None };
                    Ok(Some(route.handle(input, &mut ctx).is_ok()))
                }
                Err(CodecError::BadData { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            }));
            match outcome {
                Ok(Ok(Some(handled))) => {
                    tally.decoded += 1;
                    tally.handled_ok += usize::from(handled);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tally.transient.push(format!("{}: {e}", route.name())),
                Err(_) => tally.panics.push(format!("{} seed {seed} round {round}: {bytes:?}", route.name())),
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_records_through_every_route_never_panic() {
    let server = Registry::new().serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut cfg = Config::defaults();
    // No broker: the tables stay empty, which is all these routes need here.
    cfg.bootstrap_servers = "127.0.0.1:1".into();
    cfg.registry.url = format!("http://{}", server.addr);
    let ids = schemas::register_all(&cfg.sr_settings().unwrap(), "").await.unwrap();
    let id = |topic: &str| ids.iter().find(|(s, _)| *s == schemas::subject(topic)).unwrap().1;
    let rt = Handle::current();

    let far = Timestamp(253_402_300_800_000); // 10000-01-01
    let verzoeken: Vec<Vec<u8>> = ["fz-1", "fz-2"]
        .iter()
        .map(|k| client::frame(id("portaal.verzoeken.v1"), &samples::verzoek(k)).unwrap())
        .collect();
    let zaakverzoeken =
        vec![client::frame(id("portaal.zaakverzoeken.v1"), &samples::zaakverzoek("zv", "z-1", samples::BSN)).unwrap()];
    let mut berichten = vec![client::frame(id("gzac.berichten.v1"), &samples::bericht("b-1", samples::BSN)).unwrap()];
    for t in [far, Timestamp(i64::MAX), Timestamp(i64::MIN)] {
        let b = gzac::Bericht { publicatiedatum: Some(t), ..samples::bericht("b-far", samples::BSN) };
        berichten.push(client::frame(id("gzac.berichten.v1"), &b).unwrap());
        let b = gzac::Bericht { einddatum_handelings_termijn: Some(t), ..samples::bericht("b-end", samples::BSN) };
        berichten.push(client::frame(id("gzac.berichten.v1"), &b).unwrap());
    }
    let taken: Vec<Vec<u8>> = [Datum::vandaag(), Datum::MAX, Datum(i32::MAX), Datum(i32::MIN)]
        .into_iter()
        .enumerate()
        .map(|(i, d)| client::frame(id(taak::GZAC_TAKEN), &samples::taak(&format!("t-{i}"), samples::BSN, d)).unwrap())
        .collect();
    let antwoorden = vec![client::frame(id(taak::ANTWOORDEN), &samples::antwoord("a-1", "t-0", samples::BSN)).unwrap()];
    let repartitioned: Vec<Vec<u8>> = taken.iter().chain(&antwoorden).cloned().collect();

    // A compatible writer of the verzoek with an extra recursive field, nested deeper than any
    // stack would hold (a 200,000-level chain), and one just inside the accepted bound.
    let mut writer: serde_json::Value = serde_json::to_value(portaal::Verzoek::get_schema()).unwrap();
    writer["fields"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "keten", "default": null,
        "type": ["null", {"type": "record", "name": "Schakel", "fields": [{"name": "volgende", "type": ["null", "Schakel"]}]}]
    }));
    let recursive_id = {
        use schema_registry_converter::async_impl::schema_registry::post_schema;
        use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, writer.to_string());
        post_schema(&cfg.sr_settings().unwrap(), "fuzz-recursief-value".into(), supplied).await.unwrap().id
    };
    let plain = client::frame(id("portaal.verzoeken.v1"), &samples::verzoek("fz-deep")).unwrap();
    let plain_len = plain.len();
    let chain = move |levels: usize| {
        let mut b = vec![0];
        b.extend_from_slice(&recursive_id.to_be_bytes());
        b.extend_from_slice(&plain[5..]);
        b.extend(std::iter::repeat_n(0x02, levels));
        b.push(0x00);
        b
    };

    let (c, fuzzed_berichten) = (cfg.clone(), berichten.clone());
    let tallies = tokio::task::spawn_blocking(move || {
        // Decoding runs on threads with the routes' stack, as in the bridge.
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let codec = Codec::new(c.sr_settings().unwrap());
                let _rt = rt.enter();
                let voorkeuren = empty_voorkeuren(&c, &rt);
                let zaken = GlobalTable::start(
                    &c,
                    &["fz.zaken".into()],
                    gzac::Zaak::get_schema(),
                    |z: &gzac::Zaak| z.uuid.clone(),
                    rt.clone(),
                )
                .unwrap()
                .remove(0);
                let deep = [chain(200_000), chain(MAX_RECURSIVE_BODY - plain_len - 1)];
                let deep_results: Vec<String> = deep
                    .iter()
                    .map(|b| match VerzoekRoute::new(&c).decode(&Decoder::new(&codec, &rt), b) {
                        Ok(_) => "ok".to_string(),
                        Err(e) => e.to_string(),
                    })
                    .collect();
                let tallies = vec![
                    feed(VerzoekRoute::new(&c), &codec, &rt, &verzoeken, 12_000, 1),
                    feed(ZaakVerzoekRoute::new(&c, zaken), &codec, &rt, &zaakverzoeken, 20_000, 2),
                    feed(BerichtRoute::new(&c, voorkeuren.clone()), &codec, &rt, &fuzzed_berichten, 3_000, 3),
                    feed(TaakRoute::new(&c, voorkeuren), &codec, &rt, &repartitioned, 4_000, 4),
                    feed(
                        Repartition::<gzac::ExterneTaak>::new(
                            &c,
                            "taak-herverdeling",
                            taak::GZAC_TAKEN,
                            taak::REPARTITION,
                            taak::taak_key,
                        ),
                        &codec,
                        &rt,
                        &taken,
                        2_000,
                        5,
                    ),
                    feed(
                        Repartition::<portaal::TaakAntwoord>::new(
                            &c,
                            "antwoord-herverdeling",
                            taak::ANTWOORDEN,
                            taak::REPARTITION,
                            taak::antwoord_key,
                        ),
                        &codec,
                        &rt,
                        &antwoorden,
                        10_000,
                        6,
                    ),
                ];
                (tallies, deep_results)
            })
            .unwrap()
            .join()
            .unwrap()
    })
    .await
    .unwrap();
    let (tallies, deep) = tallies;
    assert!(deep[0].contains("too-deep"), "a 200,000-level value is refused before decoding: {}", deep[0]);
    assert_eq!(deep[1], "ok", "a recursive value inside the bound decodes");

    let calls: usize = tallies.iter().map(|t| t.calls).sum();
    assert!(calls >= 100_000, "only {calls} records fed");
    for t in &tallies {
        assert!(t.panics.is_empty(), "panics: {:?}", &t.panics[..t.panics.len().min(3)]);
        assert!(
            t.transient.is_empty(),
            "bad input taken for an outage: {:?}",
            &t.transient[..t.transient.len().min(3)]
        );
        // Mutations that keep a record readable exist: the fuzzing reached handle.
        assert!(t.decoded > 0 && t.handled_ok > 0, "{t:?}");
    }
    // Every date out of 1970..=9999 was refused by handle: a weigering for GZAC, nothing published.
    let mut store = Store::default();
    let voorkeuren_cfg = cfg.clone();
    let codec = Codec::new(cfg.sr_settings().unwrap());
    let rt = Handle::current();
    let refused = tokio::task::spawn_blocking(move || {
        let _rt = rt.enter();
        let table = empty_voorkeuren(&voorkeuren_cfg, &rt);
        let mut route = BerichtRoute::new(&voorkeuren_cfg, table);
        berichten[1..]
            .iter()
            .map(|b| {
                let input = route.decode(&Decoder::new(&codec, &rt), b).unwrap();
                let mut ctx = Ctx { now: Timestamp::now(), partition: 0, state: &mut store, link: None };
                let out = route.handle(input, &mut ctx).unwrap();
                out.iter().map(|o| o.topic.clone()).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(refused.len(), 6);
    for topics in refused {
        assert_eq!(topics, vec![format!("{}gzac.weigeringen.v1", cfg.topic_prefix)], "an out-of-range date is refused");
    }
}
