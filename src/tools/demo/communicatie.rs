//! The demo's part two: read receipts, escalation, quiet hours and a digest, on a simulated clock.

use super::*;

// Part two: a klant who reads some berichten and leaves one, and one who gets SMS only.
const C1: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d11";
const C2: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d12";
const C3: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d13";
const C4: &str = "8c1a6f0e-2d4b-4e7a-9c3d-5b6a7f8e9d14";
/// A third valid BSN (elfproef), for the klant who chose SMS only.
const SMS_BSN: &str = "123456782";

/// Wait until the bridge's records not shown before satisfy `done`, then print them.
async fn show(
    cfg: &Config,
    codec: &Codec,
    seen: &mut std::collections::HashSet<(String, i32, i64)>,
    what: &str,
    done: impl Fn(&[&Received]) -> bool + Send + 'static,
) -> anyhow::Result<()> {
    let (c, topics) = (cfg.clone(), COMMUNICATIE.iter().map(|t| cfg.topic(t)).collect::<Vec<_>>());
    let old = seen.clone();
    let mut reached = None;
    let recs = tokio::task::spawn_blocking(move || {
        client::read_until(&c, &topics, Duration::from_secs(60), |recs| {
            let new: Vec<&Received> = by_bridge(recs)
                .into_iter()
                .filter(|r| !old.contains(&(r.topic.clone(), r.partition, r.offset)))
                .collect();
            if done(&new) && reached.is_none() {
                reached = Some(std::time::Instant::now());
            }
            reached.is_some_and(|t: std::time::Instant| t.elapsed() >= Duration::from_millis(800))
        })
    })
    .await??;
    println!("\n{what}");
    let mut new: Vec<&Received> =
        by_bridge(&recs).into_iter().filter(|r| !seen.contains(&(r.topic.clone(), r.partition, r.offset))).collect();
    new.sort_by_key(|r| r.timestamp);
    if new.is_empty() {
        println!("  (nothing)");
    }
    for r in new {
        println!("{}", describe(codec, r).await);
        seen.insert((r.topic.clone(), r.partition, r.offset));
    }
    Ok(())
}

const COMMUNICATIE: &[&str] =
    &["portaal.berichten.v1", "notificaties.opdrachten.v1", "gzac.berichten-geopend.v1", "gzac.niet-bereikt.v1"];

/// Read receipts, escalation, quiet hours and a digest, on a simulated clock: the bridge is
/// restarted with those settings and the demo moves its clock forward (days in seconds).
pub(super) async fn run(
    cfg: &Config,
    w: &mut Writer<'_>,
    codec: &Codec,
    seen: &mut std::collections::HashSet<(String, i32, i64)>,
) -> anyhow::Result<bridge::Running> {
    use crate::config::StilleUren;
    let mut cfg = cfg.clone();
    let n = &mut cfg.notificaties;
    n.stille_uren = Some(StilleUren {
        van: "21:00".into(),
        tot: "08:00".into(),
        kanalen: vec![common::Kanaal::Sms],
        uitgezonderd: vec![],
    });
    n.bundel.venster = Duration::from_secs(30);
    n.escalatie.berichten.voor_einddatum = Some(Duration::from_secs(2 * 86_400));
    let vandaag = Datum::vandaag();
    let clock = |t: Timestamp, what: &str| {
        cfg.pipeline.clock.set(t);
        println!("\nclock    : {} ({what})", t.rfc3339());
    };
    println!("\n--- citizen communication: the bridge restarts with quiet hours 21:00-08:00 (SMS), digests");
    println!("    of 30 s (email) and escalation 2 days before the deadline; the clock is simulated.");
    clock(vandaag.om(21).plus(Duration::from_secs(5 * 60)), "21:05 tonight");
    let running = bridge::start(&cfg)?;
    w.send(
        "portaal.klantvoorkeuren.v1",
        "klant-2",
        &samples::klantvoorkeur(OTHER_BSN, vec![common::Kanaal::Email]),
        "klantvoorkeur: email (a phone number is known too)",
    )
    .await?;
    w.send(
        "portaal.klantvoorkeuren.v1",
        "klant-3",
        &samples::klantvoorkeur(SMS_BSN, vec![common::Kanaal::Sms]),
        "klantvoorkeur: sms only",
    )
    .await?;
    let eind = vandaag.plus(3).om(12);
    let act = |uuid: &str, bsn: &str, h| gzac::Bericht {
        publicatiedatum: None,
        einddatum_handelings_termijn: Some(eind),
        handelings_perspectief: Some(h),
        ..samples::bericht(uuid, bsn)
    };
    use gzac::HandelingsPerspectief::{InformatieGeven, InformatieKrijgen};
    w.send("gzac.berichten.v1", C1, &act(C1, OTHER_BSN, InformatieGeven), "asks to act; will be opened").await?;
    w.send("gzac.berichten.v1", C2, &act(C2, OTHER_BSN, InformatieGeven), "asks to act; left unread").await?;
    w.send("gzac.berichten.v1", C3, &act(C3, OTHER_BSN, InformatieKrijgen), "for information").await?;
    w.send("gzac.berichten.v1", C4, &act(C4, SMS_BSN, InformatieKrijgen), "for the SMS-only klant, at night").await?;
    show(&cfg, codec, seen, "published; the three emails wait for the digest window, the SMS for the morning:", |r| {
        r.iter().filter(|r| r.topic.ends_with("portaal.berichten.v1")).count() >= 4
    })
    .await?;
    let opening = portaal::BerichtGeopend {
        id: "o-1".into(),
        bericht_id: C1.into(),
        geopend_op: cfg.pipeline.clock.now(),
        door: portaal::Partij { soort: portaal::PartijType::Bsn, value: OTHER_BSN.into() },
    };
    println!("\nportal: the klant opens one bericht (twice):");
    w.send("portaal.berichten-geopend.v1", C1, &opening, "opened").await?;
    w.send(
        "portaal.berichten-geopend.v1",
        C1,
        &portaal::BerichtGeopend { id: "o-2".into(), ..opening },
        "opened again",
    )
    .await?;
    show(&cfg, codec, seen, "GZAC hears of the first opening only:", |r| {
        r.iter().any(|r| r.topic.ends_with("gzac.berichten-geopend.v1"))
    })
    .await?;
    clock(cfg.pipeline.clock.now().plus(Duration::from_secs(31)), "31 s later: the digest window closes");
    show(&cfg, codec, seen, "one email for three berichten; the SMS still waits:", |r| {
        r.iter().any(|r| r.header("ce_type") == Some(crate::routes::notificatie::TYPE))
    })
    .await?;
    clock(vandaag.plus(1).om(8).plus(Duration::from_secs(1)), "08:00:01 tomorrow");
    show(&cfg, codec, seen, "the quiet hours are over: the SMS goes out, once:", |r| !r.is_empty()).await?;
    clock(vandaag.plus(2).om(10), "10:00 in two days: two days before the deadline");
    show(&cfg, codec, seen, "the unread bericht that asks to act is escalated by SMS (the opened one and the ones for information are not):", |r| !r.is_empty()).await?;
    Ok(running)
}
