//! `gzac-portal-bridge demo`: the main job on embedded defaults, no set-up. An in-process broker
//! (librdkafka's mock cluster), the project's registry, every topic and schema, the bridge, and a
//! scripted scenario; then it prints what came out on which topic.

use crate::client::{self, Received};
use crate::codec::Codec;
use crate::config::Config;
use crate::identifiers::mask;
use crate::model::{common, gzac, portaal, Datum, Timestamp};
use crate::routes::verzoek;
use crate::tools::registry::Registry;
use crate::{bridge, schemas, topology};
use apache_avro::AvroSchema;
use rdkafka::mocking::MockCluster;
use std::future::Future;
use std::time::Duration;

pub use crate::tools::bench::{bench, BenchArgs};

use crate::tools::samples::{self, BSN, OTHER_BSN};

mod communicatie;
mod gemeenten;

/// Writes scenario records and says what each one is.
struct Writer<'a> {
    cfg: &'a Config,
    ids: &'a [(String, u32)],
    producer: rdkafka::producer::FutureProducer,
    written: usize,
}

impl Writer<'_> {
    async fn raw(&mut self, topic: &str, key: &str, bytes: &[u8], what: &str) -> anyhow::Result<()> {
        let topic = self.cfg.topic(topic);
        client::send(
            &self.producer,
            &topic,
            key,
            bytes,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await?;
        println!("  {topic:<28} key={key:<10} {what}");
        self.written += 1;
        Ok(())
    }

    async fn send<T: serde::Serialize + AvroSchema>(
        &mut self,
        topic: &str,
        key: &str,
        record: &T,
        what: &str,
    ) -> anyhow::Result<()> {
        let subject = schemas::subject(&self.cfg.topic(topic));
        let id = self
            .ids
            .iter()
            .find(|(s, _)| *s == subject)
            .map(|(_, id)| *id)
            .ok_or_else(|| anyhow::anyhow!("{subject} not registered"))?;
        let bytes = client::frame(id, record)?;
        self.raw(topic, key, &bytes, what).await
    }
}

/// One line per output record: topic, key, CloudEvents type and a summary without personal data.
async fn describe(codec: &Codec, r: &Received) -> String {
    let bytes = r.value.as_deref().unwrap_or_default();
    let kind = r.header("ce_type").unwrap_or("-");
    let decode = |_: ()| async {
        let name = codec.writer_name(bytes).await?;
        let text = match name.as_str() {
            "nl.gzac.zaak.Verzoek" => {
                let v: gzac::Verzoek = codec.decode(bytes, &gzac::Verzoek::get_schema()).await?;
                let (kind, number) = v.initiator.rsplit_once(':').unwrap_or(("", &v.initiator));
                let about = match v.is_gerelateerd_aan.first() {
                    Some(z) => format!("zaakverzoek on {}", z.urn),
                    None => "verzoek".to_string(),
                };
                format!(
                    "{about} of verzoekType …{}, initiator {kind}:{}, taal {}",
                    &v.verzoek_type[v.verzoek_type.len().saturating_sub(12)..],
                    mask(number),
                    v.verzoek_taal
                )
            }
            "nl.gzac.common.Terugmelding" => {
                let t: common::Terugmelding = codec.decode(bytes, &common::Terugmelding::get_schema()).await?;
                format!("{:?} {} {:?} {}", t.soort, t.referentie, t.status, t.reden_code.unwrap_or_default())
            }
            "nl.gzac.portaal.Bericht" => {
                let b: portaal::Bericht = codec.decode(bytes, &portaal::Bericht::get_schema()).await?;
                format!(
                    "bericht {:?} for {:?} {} ({}, until {}, onderwerp {} chars)",
                    b.bericht_type,
                    b.identificatie.soort,
                    mask(&b.identificatie.value),
                    b.handelingsperspectief,
                    b.einddatum_handelingstermijn.iso(),
                    b.onderwerp.chars().count()
                )
            }
            "nl.gzac.common.Notificatieopdracht" => {
                let n: common::Notificatieopdracht =
                    codec.decode(bytes, &common::Notificatieopdracht::get_schema()).await?;
                let r = &n.request;
                let mut p: Vec<String> = r.personalisation.iter().map(|(k, v)| format!("{k}={v}")).collect();
                p.sort();
                let to = r.email_address.as_deref().or(r.phone_number.as_deref()).unwrap_or("");
                format!(
                    "{}: {:?} to {} template {} [{}]",
                    n.gebeurtenis,
                    n.kanaal,
                    mask(to),
                    r.template_id,
                    p.join(", ")
                )
            }
            "nl.gzac.portaal.Taak" => {
                let t: portaal::Taak = codec.decode(bytes, &portaal::Taak::get_schema()).await?;
                format!("taak {:?} status {:?} ({})", t.soort, t.status, t.titel)
            }
            "nl.gzac.common.Weigering" => {
                let w: common::Weigering = codec.decode(bytes, &common::Weigering::get_schema()).await?;
                format!("{:?} {} not delivered: {}", w.soort, w.referentie, w.reden_code)
            }
            "nl.gzac.zaak.BerichtGeopendOp" => {
                let g: gzac::BerichtGeopendOp = codec.decode(bytes, &gzac::BerichtGeopendOp::get_schema()).await?;
                format!("bericht {} geopendOp {}", g.uuid, g.geopend_op.rfc3339())
            }
            "nl.gzac.common.NietBereikt" => {
                let n: common::NietBereikt = codec.decode(bytes, &common::NietBereikt::get_schema()).await?;
                format!("{:?} {} niet bereikt: {}", n.soort, n.referentie, n.reden_code)
            }
            "nl.gzac.zaak.ExterneTaak" => {
                let t: gzac::ExterneTaak = codec.decode(bytes, &gzac::ExterneTaak::get_schema()).await?;
                format!(
                    "{:?} {} status {:?} (einddatum {})",
                    t.taak_soort,
                    t.uuid,
                    t.status,
                    t.einddatum_handelings_termijn.iso()
                )
            }
            other => other.to_string(),
        };
        Ok::<String, crate::codec::CodecError>(text)
    };
    let body = if r.topic.ends_with(".dlq") {
        format!(
            "dead letter: {} ({})",
            r.header("__connect.errors.exception.class.name").unwrap_or("?"),
            r.header("__connect.errors.exception.message").unwrap_or("?")
        )
    } else {
        decode(()).await.unwrap_or_else(|e| format!("undecodable: {e}"))
    };
    format!("  {:<28} key={:<38} {:<46} {}", r.topic, r.key_str(), kind, body)
}

/// Every topic the bridge writes to.
// The demo's berichten and taken (Open VTB gives them UUIDs).
const B1: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d01";
const B2: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d02";
const B3: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d03";
const T1: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e21";
const T2: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e22";
const T3: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e23";
const T4: &str = "3f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e24";

const OUTPUTS: &[&str] = &[
    "gzac.verzoeken.v1",
    "portaal.verzoeken.v1.dlq",
    "portaal.berichten.v1",
    "notificaties.opdrachten.v1",
    "portaal.taken.v1",
    "gzac.taakantwoorden.v1",
    "gzac.zaakverzoeken.v1",
    "gzac.weigeringen.v1",
    "portaal.terugmeldingen.v1",
];

/// Records the bridge wrote (with a CloudEvents source, or dead letters).
fn by_bridge(recs: &[Received]) -> Vec<&Received> {
    recs.iter().filter(|r| r.header("ce_source").is_some() || r.topic.ends_with(".dlq")).collect()
}

async fn read(cfg: &Config, n: usize, settle: Duration) -> anyhow::Result<Vec<Received>> {
    let (cfg, topics) = (cfg.clone(), OUTPUTS.iter().map(|t| cfg.topic(t)).collect::<Vec<_>>());
    let mut reached = None;
    tokio::task::spawn_blocking(move || {
        client::read_until(&cfg, &topics, Duration::from_secs(90), |recs| {
            if by_bridge(recs).len() >= n && reached.is_none() {
                reached = Some(std::time::Instant::now());
            }
            reached.is_some_and(|t: std::time::Instant| t.elapsed() >= settle)
        })
    })
    .await?
}

pub async fn run(keep_running: bool, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    println!("broker   : embedded librdkafka mock cluster at {}", mock.bootstrap_servers());
    println!(
        "           (an in-process stand-in for the demo; the tests prove exactly-once on a real Apache Kafka broker)"
    );
    let registry = Registry::new();
    let server = registry.serve("127.0.0.1:0".parse()?).await?;
    println!("registry : http://{} (embedded, Confluent API)", server.addr);

    let mut cfg = Config::defaults();
    // A demo on an in-memory broker: its state needs no key.
    cfg.state_encryption.unsealed = true;
    cfg.bootstrap_servers = mock.bootstrap_servers();
    cfg.registry.url = format!("http://{}", server.addr);
    cfg.pipeline.batch_max_interval = Duration::from_millis(50);
    cfg.pipeline.tick_interval = Duration::from_millis(250);
    // Reminders at midnight, so that today's reminder is due while the demo runs.
    cfg.taken.herinnering_uur = 0;
    // The demo restarts the bridge for its second part; a short session lets the group move on
    // quickly (the mock broker waits for a stopped static member's session to end).
    cfg.kafka_consumer.insert("session.timeout.ms".into(), "6000".into());
    cfg.kafka_consumer.insert("heartbeat.interval.ms".into(), "500".into());
    cfg.pipeline.shutdown_timeout = Some(Duration::from_secs(4));
    // The mock broker does not answer DescribeConfigs: give the size limits instead.
    cfg.pipeline.max_record_bytes = Some(1_000_000);
    cfg.kafka_producer.insert("message.max.bytes".into(), "1000000".into());

    let topics = topology::Topology::load()?.wanted(&cfg.topic_prefix)?;
    for t in &topics {
        mock.create_topic(&t.name, t.partitions, 1)?;
    }
    println!("topics   : {} created from topics.yaml (the mock broker has no CreateTopics; `topics apply` does this on a real cluster)", topics.len());
    let ids = schemas::register_all(&cfg.sr_settings()?, &cfg.topic_prefix).await?;
    println!("schemas  : {} subjects registered", ids.len());
    let mut w = Writer { cfg: &cfg, ids: &ids, producer: client::producer(&cfg)?, written: 0 };

    println!("\nreference tables:");
    w.send(
        "portaal.klantvoorkeuren.v1",
        "klant-1",
        &samples::klantvoorkeur(BSN, vec![common::Kanaal::Email, common::Kanaal::Sms]),
        "klantvoorkeur: email and sms",
    )
    .await?;
    w.send("gzac.zaken.v1", "z-1", &samples::zaak("z-1", BSN), "zaak z-1 with one betrokkene").await?;

    let running = bridge::start(&cfg)?;
    println!("\nportal files verzoeken:");
    w.send(verzoek::INPUT, "demo-1", &samples::verzoek("demo-1"), "a valid verzoek").await?;
    w.send(
        verzoek::INPUT,
        "demo-2",
        &portaal::Verzoek { bsn: Some("123456789".into()), ..samples::verzoek("demo-2") },
        "an invalid BSN",
    )
    .await?;
    w.send(
        verzoek::INPUT,
        "demo-3",
        &portaal::Verzoek { verzoektype: "kapvergunning".into(), ..samples::verzoek("demo-3") },
        "an unknown verzoektype",
    )
    .await?;
    w.send(
        verzoek::INPUT,
        "demo-4",
        &portaal::Verzoek {
            bsn: None,
            kvk: Some("12345678".into()),
            rol: Some(portaal::Rol::Ketenpartner),
            ..samples::verzoek("demo-4")
        },
        "a verzoek filed as ketenpartner",
    )
    .await?;
    w.raw(verzoek::INPUT, "demo-5", b"\x00\xff\xfe this is not avro", "garbage bytes").await?;

    let now = Timestamp::now().0;
    println!("\nGZAC sends berichten and taken:");
    w.send("gzac.berichten.v1", B1, &samples::bericht(B1, BSN), "a bericht to publish now").await?;
    w.send(
        "gzac.berichten.v1",
        B2,
        &gzac::Bericht { publicatiedatum: Some(Timestamp(now + 6000)), ..samples::bericht(B2, BSN) },
        "a bericht scheduled 6 s from now",
    )
    .await?;
    let unmapped = gzac::Bericht {
        handelings_perspectief: Some(gzac::HandelingsPerspectief::VernieuwingNodig),
        ..samples::bericht(B3, BSN)
    };
    w.send("gzac.berichten.v1", B3, &unmapped, "a bericht whose handelingsPerspectief NL Portal lacks").await?;
    let vandaag = Datum::vandaag();
    let t1 = gzac::ExterneTaak { datum_herinnering: Some(vandaag), ..samples::taak(T1, BSN, vandaag.plus(14)) };
    w.send("gzac.taken.v1", T1, &t1, "a formuliertaak for the klant, reminder due today").await?;
    w.send("gzac.taken.v1", T2, &samples::taak(T2, BSN, vandaag.plus(-1)), "a taak whose last day was yesterday")
        .await?;
    w.send("gzac.taken.v1", T3, &samples::betaaltaak(T3, BSN, vandaag.plus(14)), "a betaaltaak of EUR 147.43").await?;
    let rsin = gzac::ExterneTaak {
        is_toegewezen_aan: "urn:nld:klant:klantnummer:610541501".into(),
        ..samples::taak(T4, BSN, vandaag.plus(14))
    };
    w.send("gzac.taken.v1", T4, &rsin, "a taak for someone the portal cannot address").await?;

    // The klant answers once the portal shows the taken.
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || {
        client::read_until(&cfg2, &[cfg2.topic("portaal.taken.v1")], Duration::from_secs(60), |r| r.len() >= 3)
    })
    .await??;
    println!("\nportal sends antwoorden and zaakverzoeken:");
    w.send(
        "portaal.taakantwoorden.v1",
        T1,
        &samples::antwoord("a-1", T1, OTHER_BSN),
        "an antwoord on t-1 by someone else",
    )
    .await?;
    w.send("portaal.taakantwoorden.v1", T1, &samples::antwoord("a-2", T1, BSN), "an antwoord on t-1 by its assignee")
        .await?;
    w.send("portaal.taakantwoorden.v1", T1, &samples::antwoord("a-3", T1, BSN), "a second antwoord on t-1").await?;
    w.send("portaal.taakantwoorden.v1", T3, &samples::betaling("a-4", T3, BSN), "the betaaltaak paid").await?;
    w.send(
        "portaal.zaakverzoeken.v1",
        "z-1",
        &samples::zaakverzoek("zv-1", "z-1", OTHER_BSN),
        "a zaakverzoek by a non-betrokkene",
    )
    .await?;
    w.send(
        "portaal.zaakverzoeken.v1",
        "z-1",
        &samples::zaakverzoek("zv-2", "z-1", BSN),
        "a zaakverzoek by a betrokkene",
    )
    .await?;

    // verzoeken 6, berichten 6, taken 17 (4 portal, 8 notificaties — none for the taak already past its last day —, herinnerd, verlopen + gesloten, weigering), antwoorden 7, zaakverzoeken 3... counted from a run: 37 (and a weigering of a bericht).
    let expected = 37;
    println!("\nwaiting for the scheduled bericht ...");
    let outputs = read(&cfg, expected, Duration::from_millis(1500)).await?;
    let codec = Codec::new(cfg.sr_settings()?);
    let mut written = by_bridge(&outputs);
    written.sort_by_key(|r| r.timestamp);
    println!("\nbridge wrote (read_committed, by time written):");
    for r in &written {
        println!("{}", describe(&codec, r).await);
    }

    running.stop(cfg.shutdown_timeout()).await?;
    let mut seen: std::collections::HashSet<(String, i32, i64)> =
        written.iter().map(|r| (r.topic.clone(), r.partition, r.offset)).collect();
    let running = communicatie::run(&cfg, &mut w, &codec, &mut seen).await?;
    running.stop(cfg.shutdown_timeout()).await?;
    let running = gemeenten::run(&cfg, &mock, &mut w, &codec, &mut seen).await?;

    if keep_running {
        println!("\nstill running. Point your own client at:");
        println!("  bootstrap.servers = {}", cfg.bootstrap_servers);
        println!("  schema registry   = {}", cfg.registry.url);
        println!("  input topics      = portaal.verzoeken.v1, portaal.zaakverzoeken.v1, portaal.taakantwoorden.v1, portaal.berichten-geopend.v1, gzac.berichten.v1, gzac.taken.v1 (Avro, subject <topic>-value)");
        println!("Ctrl-C stops.");
        tokio::select! {
            _ = stop => {}
            _ = running.wait_for_failure() => {}
        }
    }
    running.stop(cfg.shutdown_timeout()).await?;
    server.stop().await;
    println!("\ndemo done: {} records written by the bridge for {} records in.", seen.len(), w.written);
    Ok(())
}
