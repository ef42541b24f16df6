//! `gzac-portal-bridge demo`: the main job on embedded defaults, no set-up. An in-process broker
//! (librdkafka's mock cluster), the project's registry, every topic and schema, the bridge, and a
//! scripted scenario; then it prints what came out on which topic.

use crate::client::{self, Received};
use crate::codec::Codec;
use crate::config::Config;
use crate::identifiers::mask;
use crate::model::{common, gzac, portaal, Timestamp};
use crate::registry::Registry;
use crate::routes::verzoek;
use crate::{bridge, schemas, topology};
use apache_avro::AvroSchema;
use rdkafka::mocking::MockCluster;
use std::future::Future;
use std::time::Duration;

pub use crate::bench::{bench, BenchArgs};

/// A valid productaanvraag, as the scenario and the tests use it.
pub fn sample_verzoek(submission_id: &str) -> portaal::Verzoek {
    portaal::Verzoek {
        submission_id: submission_id.into(),
        verzoektype: "parkeervergunning".into(),
        bsn: Some("569312863".into()),
        kvk: None,
        rol: portaal::Rol::Klant,
        data: r#"{"kenteken":"AB-123-C","zone":"centrum"}"#.into(),
        pdf_url: Some(format!(
            "https://formulieren.gemeente.example/pdf/{submission_id}"
        )),
        attachments: vec![],
        language_code: "nl".into(),
        payment: Some(portaal::Payment {
            completed: true,
            amount_cents: 4250,
            public_order_ids: vec!["order-77".into()],
        }),
        submitted_at: Timestamp::now(),
    }
}

/// The scenario: (what it shows, key, value bytes or garbage).
fn scenario(verzoek_schema_id: u32) -> anyhow::Result<Vec<(&'static str, String, Vec<u8>)>> {
    let enc = |v: &portaal::Verzoek| client::frame(verzoek_schema_id, v);
    Ok(vec![
        (
            "a valid verzoek",
            "demo-1".into(),
            enc(&sample_verzoek("demo-1"))?,
        ),
        (
            "an invalid BSN",
            "demo-2".into(),
            enc(&portaal::Verzoek {
                bsn: Some("123456789".into()),
                ..sample_verzoek("demo-2")
            })?,
        ),
        (
            "an unknown verzoektype",
            "demo-3".into(),
            enc(&portaal::Verzoek {
                verzoektype: "kapvergunning".into(),
                ..sample_verzoek("demo-3")
            })?,
        ),
        (
            "a verzoek filed as ketenpartner",
            "demo-4".into(),
            enc(&portaal::Verzoek {
                bsn: None,
                kvk: Some("12345678".into()),
                rol: portaal::Rol::Ketenpartner,
                ..sample_verzoek("demo-4")
            })?,
        ),
        (
            "garbage bytes",
            "demo-5".into(),
            b"\x00\xff\xfe this is not avro".to_vec(),
        ),
    ])
}

/// One line per output record: topic, key, CloudEvents type and a summary without personal data.
async fn describe(codec: &Codec, r: &Received) -> String {
    let bytes = r.value.as_deref().unwrap_or_default();
    let kind = r.header("ce_type").unwrap_or("-");
    let body = if r.topic.ends_with(".dlq") {
        format!(
            "dead letter: {} ({})",
            r.header("__connect.errors.exception.class.name")
                .unwrap_or("?"),
            r.header("__connect.errors.exception.message")
                .unwrap_or("?")
        )
    } else if r.topic.ends_with(verzoek::OUTPUT) {
        match codec
            .decode::<gzac::Verzoek>(bytes, &gzac::Verzoek::get_schema())
            .await
        {
            Ok(v) => format!(
                "verzoek {} zaaktype …{} initiator {:?} {} taal {} bijlagen {}",
                v.uuid,
                &v.zaaktype[v.zaaktype.len().saturating_sub(12)..],
                v.initiator.soort,
                mask(&v.initiator.waarde),
                v.taal,
                v.bijlagen.len()
            ),
            Err(e) => format!("undecodable: {e}"),
        }
    } else {
        match codec
            .decode::<common::Terugmelding>(bytes, &common::Terugmelding::get_schema())
            .await
        {
            Ok(t) => format!(
                "terugmelding {:?} {}: {}",
                t.status,
                t.reden_code.unwrap_or_default(),
                t.toelichting
            ),
            Err(e) => format!("undecodable: {e}"),
        }
    };
    format!(
        "  {:<28} key={:<8} {:<48} {}",
        r.topic,
        r.key_str(),
        kind,
        body
    )
}

pub async fn run(keep_running: bool, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    println!(
        "broker   : embedded librdkafka mock cluster at {}",
        mock.bootstrap_servers()
    );
    println!("           (an in-process stand-in for the demo; the tests prove exactly-once on a real Apache Kafka broker)");
    let registry = Registry::new();
    let server = registry.serve("127.0.0.1:0".parse()?).await?;
    let addr = server.addr;
    println!("registry : http://{addr} (embedded, Confluent API)");

    let mut cfg = Config::defaults();
    cfg.bootstrap_servers = mock.bootstrap_servers();
    cfg.registry.url = format!("http://{addr}");
    cfg.pipeline.batch_max_interval = Duration::from_millis(50);

    let topics = topology::Topology::load()?.wanted(&cfg.topic_prefix)?;
    for t in &topics {
        mock.create_topic(&t.name, t.partitions, 1)?;
    }
    println!("topics   : {} created from topics.yaml (the mock broker has no CreateTopics; `topics apply` does this on a real cluster)", topics.len());
    let ids = schemas::register_all(&cfg.sr_settings()?, &cfg.topic_prefix).await?;
    println!("schemas  : {} subjects registered", ids.len());
    let verzoek_id = ids
        .iter()
        .find(|(s, _)| *s == schemas::subject(&cfg.topic(verzoek::INPUT)))
        .map(|(_, id)| *id)
        .ok_or_else(|| anyhow::anyhow!("the verzoek schema was not registered"))?;

    let running = bridge::start(&cfg)?;
    let producer = client::producer(&cfg)?;
    let scenario = scenario(verzoek_id)?;
    println!("\nportal writes to {}:", cfg.topic(verzoek::INPUT));
    for (what, key, value) in &scenario {
        client::send(
            &producer,
            &cfg.topic(verzoek::INPUT),
            key,
            value,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .await?;
        println!("  key={key:<8} {what}");
    }

    // One GZAC verzoek, four terugmeldingen (one doorgestuurd, three afgewezen), one dead letter.
    let out_topics = [
        cfg.topic(verzoek::OUTPUT),
        cfg.topic(verzoek::TERUGMELDINGEN),
        format!("{}.dlq", cfg.topic(verzoek::INPUT)),
    ];
    let cfg2 = cfg.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        client::read_n(
            &cfg2,
            &out_topics,
            6,
            Duration::from_secs(60),
            Duration::from_millis(500),
        )
    })
    .await??;
    let codec = Codec::new(cfg.sr_settings()?);
    println!("\nbridge wrote (read_committed):");
    for r in &outputs {
        println!("{}", describe(&codec, r).await);
    }

    if keep_running {
        println!("\nstill running. Point your own client at:");
        println!("  bootstrap.servers = {}", cfg.bootstrap_servers);
        println!("  schema registry   = {}", cfg.registry.url);
        println!(
            "  input topic       = {} (Avro, subject {})",
            cfg.topic(verzoek::INPUT),
            schemas::subject(&cfg.topic(verzoek::INPUT))
        );
        println!("Ctrl-C stops.");
        tokio::select! {
            _ = stop => {}
            _ = running.wait_for_failure() => {}
        }
    }
    running.stop(cfg.pipeline.shutdown_timeout).await?;
    println!(
        "\ndemo done: {} records out for {} in.",
        outputs.len(),
        scenario.len()
    );
    Ok(())
}
