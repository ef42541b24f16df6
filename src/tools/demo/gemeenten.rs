//! The demo's part three: a second municipality on the same bridge, kept apart by its topics.

use super::*;

const ZEIST_BERICHT: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d21";
const OWN_BERICHT: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d22";

/// The bridge restarted for two municipalities (this one and Zeist, with its own OIN, topics,
/// portal and NotifyNL template); the same klant gets a bericht from each.
pub(super) async fn run(
    cfg: &Config,
    mock: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    w: &mut Writer<'_>,
    codec: &Codec,
    seen: &mut std::collections::HashSet<(String, i32, i64)>,
) -> anyhow::Result<bridge::Running> {
    let yaml = format!(
        r#"
- id: mijngemeente
  oin: "{}"
  topic_prefix: "{}"
- id: zeist
  oin: "00000001003214345000"
  topic_prefix: "zeist."
  notificaties:
    portaal_url: "https://mijn.zeist.example"
    templates:
      bericht:
        email: {{ nld: "5eeeeeee-51e4-4b53-9d7a-2f6c1b8e4a01" }}
"#,
        cfg.oin, cfg.topic_prefix
    );
    let mut multi = cfg.clone();
    multi.gemeenten = serde_yaml::from_str(&yaml)?;
    let gemeenten = multi.gemeenten()?;
    let zeist = &gemeenten[1].cfg;
    for t in topology::Topology::load()?.wanted(&zeist.topic_prefix)? {
        mock.create_topic(&t.name, t.partitions, 1)?;
    }
    let ids = schemas::register_all(&zeist.sr_settings()?, &zeist.topic_prefix).await?;
    println!("\n--- a second municipality: the bridge restarts for `mijngemeente` and `zeist` (its own OIN, topics");
    println!("    `zeist.*`, portal and NotifyNL template); one process, the same nine routes and consumers.");
    let running = bridge::start(&multi)?;
    let mut z = Writer { cfg: zeist, ids: &ids, producer: client::producer(zeist)?, written: 0 };
    z.send(
        "portaal.klantvoorkeuren.v1",
        "klant-1",
        &samples::klantvoorkeur(BSN, vec![common::Kanaal::Email]),
        "zeist's klantvoorkeur of the same klant: email",
    )
    .await?;
    z.send("gzac.berichten.v1", ZEIST_BERICHT, &samples::bericht(ZEIST_BERICHT, BSN), "a bericht from Zeist").await?;
    w.send("gzac.berichten.v1", OWN_BERICHT, &samples::bericht(OWN_BERICHT, BSN), "a bericht from mijngemeente")
        .await?;
    w.written += z.written;

    let topics: Vec<String> = gemeenten
        .iter()
        .flat_map(|g| ["portaal.berichten.v1", "notificaties.opdrachten.v1"].map(|t| g.cfg.topic(t)))
        .collect();
    let c = cfg.clone();
    let recs = tokio::task::spawn_blocking(move || {
        let mut reached = None;
        client::read_until(&c, &topics, Duration::from_secs(60), |recs| {
            let published = recs.iter().filter(|r| r.topic.ends_with("portaal.berichten.v1") && about(r)).count();
            if published >= 2 && reached.is_none() {
                reached = Some(std::time::Instant::now());
            }
            reached.is_some_and(|t: std::time::Instant| t.elapsed() >= Duration::from_millis(1500))
        })
    })
    .await??;
    println!("\neach on its own municipality's topics, with its own OIN (ce_source), template and link:");
    let mut mine: Vec<&Received> = recs.iter().filter(|r| about(r)).collect();
    mine.sort_by_key(|r| r.timestamp);
    for r in mine {
        let oin = r.header("ce_source").and_then(|s| s.split(':').nth(3)).unwrap_or("-");
        println!("{}\n  {:<28} oin {oin}", describe(codec, r).await, "");
        seen.insert((r.topic.clone(), r.partition, r.offset));
    }
    Ok(running)
}

/// A record about one of this part's berichten: the bericht (by its key) or a notificatie that
/// names it.
fn about(r: &Received) -> bool {
    let contains = |v: &[u8], id: &str| v.windows(id.len()).any(|w| w == id.as_bytes());
    [ZEIST_BERICHT, OWN_BERICHT]
        .iter()
        .any(|id| r.key_str() == *id || r.value.as_deref().is_some_and(|v| contains(v, id)))
}
