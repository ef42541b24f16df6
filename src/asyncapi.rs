//! The whole topic contract as an AsyncAPI 3.0 document (`gzac-portal-bridge asyncapi`, committed
//! as asyncapi.yaml): every topic a channel with its Kafka bindings, its message with the Avro
//! schema and the CloudEvents headers, which roles send and receive it, and the security scheme.
//! Generated from topics.yaml and the schema catalogue, so it cannot drift from them.

use crate::schemas;
use crate::topology::Topology;
use serde_json::{json, Map, Value};

const AVRO: &str = "application/vnd.apache.avro+json;version=1.9.0";
const BINDING: &str = "0.5.0";

/// The CloudEvents 1.0 Kafka binary-mode headers (NL GOV profile) every record the bridge
/// writes carries; inputs may carry `traceparent`.
fn headers() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({
        "type": "object",
        "properties": {
            "ce_specversion": s("CloudEvents version, `1.0`."),
            "ce_id": s("Unique per distinct event; a replay repeats it."),
            "ce_source": s("`urn:nld:oin:<OIN>:systeem:gzac-portal-bridge`."),
            "ce_type": s("Reverse-DNS, past tense; each type belongs to one schema (README)."),
            "ce_time": s("When the bridge wrote the record (RFC 3339)."),
            "ce_subject": s("The record's id, never a BSN."),
            "ce_dataschema": s("`<registry>/schemas/ids/<id>` of the value's schema."),
            "ce_causationid": s("`<topic>/<partition>/<offset>` of the input that caused it."),
            "content-type": s("`application/avro`."),
            "traceparent": s("W3C trace context, carried from input to output."),
        }
    })
}

/// The document, as a JSON value (serialised to YAML by the command).
pub fn document() -> anyhow::Result<Value> {
    let topology = Topology::load()?;
    let wanted = topology.wanted("")?;
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for (t, w) in topology.topics.iter().zip(&wanted) {
        let entry = schemas::of_topic(&t.name);
        let message_id = entry.as_ref().map_or_else(|| format!("{}.raw", t.name), |e| e.name.to_string());
        if !messages.contains_key(&message_id) {
            let payload = match &entry {
                Some(e) => json!({"schemaFormat": AVRO, "schema": serde_json::to_value((e.schema)())?}),
                None => json!({"type": "string", "description": format!("Not Avro: {}.", t.value)}),
            };
            let mut message = json!({
                "name": message_id,
                "title": message_id,
                "contentType": if entry.is_some() { "application/avro" } else { "application/octet-stream" },
                "headers": headers(),
                "payload": payload,
                "bindings": {"kafka": {
                    "key": {"type": "string", "description": "Plain UTF-8: the record's stable id (see the channel), never a BSN."},
                    "bindingVersion": BINDING,
                }},
            });
            if entry.is_some() {
                message["bindings"]["kafka"]["schemaIdLocation"] = "payload".into();
                message["bindings"]["kafka"]["schemaIdPayloadEncoding"] = "confluent".into();
            }
            messages.insert(message_id.clone(), message);
        }
        let mut config = json!({"cleanup.policy": [w.cleanup_policy], "retention.ms": w.retention_ms});
        if t.confidential {
            config["x-confidential"] = true.into();
        }
        channels.insert(
            t.name.clone(),
            json!({
                // Every municipality its own topics: the deployment's (or the municipality's)
                // topic prefix before the contract name.
                "address": format!("{{prefix}}{}", t.name),
                "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
                "title": t.name,
                "description": format!(
                    "Pattern {}. Key: {}. Written by {}; read by {}.{}",
                    t.pattern,
                    t.key,
                    t.write.join(", "),
                    t.read.join(", "),
                    if t.confidential { " Confidential: never for integrators." } else { "" }
                ),
                "messages": {message_id.clone(): {"$ref": format!("#/components/messages/{message_id}")}},
                "bindings": {"kafka": {
                    "partitions": w.partitions,
                    "replicas": topology.defaults.replication_factor,
                    "topicConfiguration": config,
                    "bindingVersion": BINDING,
                }},
            }),
        );
        let channel = format!("#/channels/{}", t.name.replace('/', "~1"));
        for (action, roles) in [("send", &t.write), ("receive", &t.read)] {
            for role in roles {
                operations.insert(
                    format!("{role}.{action}.{}", t.name),
                    json!({
                        "action": action,
                        "title": format!("{role} {action}s {}", t.name),
                        "channel": {"$ref": channel},
                        "messages": [{"$ref": format!("{channel}/messages/{message_id}")}],
                    }),
                );
            }
        }
    }
    Ok(json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "gzac-portal-bridge",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Kafka topics between a municipality's citizen portal (NL Portal, Open Formulieren) and GZAC (Open VTB), translated exactly once by gzac-portal-bridge. Every municipality has its own set, under its topic prefix (`{prefix}`); one bridge may serve many. Generated from topics.yaml and schemas/ by `gzac-portal-bridge asyncapi`; read with isolation.level=read_committed.",
            "license": {"name": "EUPL-1.2", "url": "https://opensource.org/licenses/EUPL-1.2"},
        },
        "defaultContentType": "application/avro",
        "servers": {"kafka": {
            "host": "kafka.gemeente.example:9093",
            "protocol": "kafka-secure",
            "description": "SASL/SCRAM over TLS; one principal per role (README, Security).",
            "security": [{"$ref": "#/components/securitySchemes/scram"}],
        }},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "parameters": {"prefix": {
                "description": "The topic prefix of the municipality (`topic_prefix`, or `gemeenten[].topic_prefix` when one bridge serves many; e.g. `utrecht.`), empty for a deployment without one. Each municipality's principals get only its own topics (`acls plan`).",
                "examples": ["", "utrecht."],
            }},
            "securitySchemes": {"scram": {
                "type": "scramSha512",
                "description": "SASL/SCRAM-SHA-512 over TLS; ACLs per role from `gzac-portal-bridge acls plan`.",
            }},
        },
    }))
}

/// The document as YAML.
pub fn yaml() -> anyhow::Result<String> {
    Ok(format!(
        "# Generated by `gzac-portal-bridge asyncapi` from topics.yaml and schemas/; do not edit.\n{}",
        serde_yaml::to_string(&document()?)?
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_asyncapi_yaml_is_up_to_date() {
        let committed = include_str!("../asyncapi.yaml");
        assert!(
            committed == super::yaml().unwrap(),
            "asyncapi.yaml is out of date: run `gzac-portal-bridge asyncapi > asyncapi.yaml`"
        );
    }
}
