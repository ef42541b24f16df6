//! What `kcat` and `kafka-avro-console-*` do, for this contract: `tail` prints each committed
//! record decoded to JSON (one object per line, with key, partition, offset and headers) and
//! `send` writes JSON lines as Avro in the Confluent wire format, all of them or none.

use crate::catch_up::{drop_reached, ends_of};
use crate::codec::{encode_with_id, Codec};
use crate::config::Config;
use crate::schemas;
use base64::Engine;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Offset;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::Duration;

/// Where `tail` starts.
#[derive(Debug, Clone)]
pub enum From {
    Beginning,
    End,
    /// The first record at or after this moment (ms since 1970).
    Time(i64),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "beginning" => Ok(From::Beginning),
            "end" => Ok(From::End),
            t => humantime::parse_rfc3339_weak(t)
                .map(|t| From::Time(t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64))
                .map_err(|e| format!("--from is beginning, end or an RFC 3339 time: {e}")),
        }
    }
}

/// A record's value as JSON: decoded with the topic's schema when it is a contract topic (the
/// shape `send` takes), else its text or, when it is no text, base64.
async fn value_json(codec: &Codec, schema: Option<&apache_avro::Schema>, bytes: &[u8]) -> Value {
    if let Some(schema) = schema {
        return match codec.decode_json(bytes, schema).await {
            Ok(v) => v,
            Err(e) => {
                json!({"undecodable": e.to_string(), "base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
            }
        };
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())),
        Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
    }
}

/// Print `topic` (a contract name; the configured prefix is added) as JSON lines on `out`.
pub async fn tail(
    cfg: &Config,
    topic: &str,
    from: From,
    follow: bool,
    key: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let name = cfg.topic(topic);
    let (start, by_time) = match from {
        From::Beginning => (Offset::Beginning, false),
        From::End => (Offset::End, false),
        From::Time(ms) => (Offset::Offset(ms), true),
    };
    let (consumer, partitions) = crate::client::reader(cfg, "tail", &name, start, by_time)?;
    let codec = Codec::new(cfg.sr_settings()?);
    // The topic's schema, derived once (not per record).
    let schema = schemas::of_topic(topic).map(|e| (e.schema)());
    let mut ends = if follow { Default::default() } else { ends_of(&consumer, &name, &partitions)? };
    if !follow {
        drop_reached(&consumer, &mut ends)?;
    }
    let mut printed = 0;
    while follow || !ends.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            if !follow {
                drop_reached(&consumer, &mut ends)?;
            }
            continue;
        };
        let m = polled?;
        let k = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        if key.is_none() || k.as_deref() == key {
            let headers: serde_json::Map<String, Value> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                Value::String(String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let value = match m.payload() {
                Some(b) => value_json(&codec, schema.as_ref(), b).await,
                None => Value::Null,
            };
            let line = json!({
                "topic": topic, "partition": m.partition(), "offset": m.offset(),
                "timestamp": m.timestamp().to_millis(), "key": k, "headers": headers, "value": value,
            });
            writeln!(out, "{line}")?;
            out.flush()?;
            printed += 1;
        }
        if !follow {
            drop_reached(&consumer, &mut ends)?;
        }
    }
    Ok(printed)
}

/// Read JSON lines `{"key": …, "value": {…}, "headers": {…}}` from `input`, check every value
/// against the topic's schema, and write them all in one transaction — or, when one line is
/// wrong, write nothing and say which lines and why.
pub async fn send(cfg: &Config, topic: &str, input: impl BufRead) -> anyhow::Result<usize> {
    let entry =
        schemas::of_topic(topic).ok_or_else(|| anyhow::anyhow!("{topic} is not a contract topic with a schema"))?;
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed =
            serde_json::from_str::<Value>(&line).map_err(|e| anyhow::anyhow!("not JSON: {e}")).and_then(|mut v| {
                let key = v["key"].as_str().map(str::to_string);
                let headers: Vec<(String, String)> = v["headers"]
                    .as_object()
                    .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                    .unwrap_or_default();
                let value = (entry.from_json)(v["value"].take())?;
                Ok((key, headers, value))
            });
        match parsed {
            Ok(r) => records.push(r),
            Err(e) => errors.push(format!("line {}: {e:#}", n + 1)),
        }
    }
    anyhow::ensure!(errors.is_empty(), "nothing written; {} line(s) refused:\n{}", errors.len(), errors.join("\n"));
    let name = cfg.topic(topic);
    let mut codec = Codec::new(cfg.sr_settings()?);
    let schema = (entry.schema)();
    let id = codec.prepare_output(&name, schema.clone()).await?;
    let encoded = records
        .into_iter()
        .map(|(k, h, v)| Ok((k, h, encode_with_id(id, &schema, v)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let producer: ThreadedProducer<DefaultProducerContext> = cfg
        .producer_config()
        .set("transactional.id", format!("{}send-{}", cfg.own_prefix(), uuid::Uuid::new_v4()))
        .create()?;
    let n = encoded.len();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let t = Duration::from_secs(30);
        producer.init_transactions(t)?;
        producer.begin_transaction()?;
        for (key, headers, value) in &encoded {
            let mut h = OwnedHeaders::new();
            for (k, v) in headers {
                h = h.insert(Header { key: k, value: Some(v) });
            }
            let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(&name).payload(value.as_slice()).headers(h);
            if let Some(k) = key {
                rec = rec.key(k.as_str());
            }
            producer.send(rec).map_err(|(e, _)| e)?;
        }
        producer.commit_transaction(t)?;
        Ok(())
    })
    .await??;
    Ok(n)
}
