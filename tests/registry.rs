//! The project's schema registry speaks the Confluent API: the client path the bridge uses
//! (schema_registry_converter) and the raw HTTP answers, error codes included.

use gzac_portal_bridge::tools::registry::Registry;
use schema_registry_converter::async_impl::schema_registry::{get_schema_by_id, post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::{json, Value};

const V1: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"}]}"#;
const V2_COMPATIBLE: &str = r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
const V2_BREAKING: &str =
    r#"{"type":"record","name":"R","namespace":"t","fields":[{"name":"a","type":"string"},{"name":"c","type":"int"}]}"#;

/// A registry for one test; it stops when the returned server is dropped.
async fn start() -> (String, gzac_portal_bridge::tools::registry::Server) {
    let server = Registry::new().serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (format!("http://{}", server.addr), server)
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut req = c.request(method, url).header("content-type", "application/vnd.schemaregistry.v1+json");
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn register_lookup_and_fetch_through_the_client_path() {
    let (url, _server) = start().await;
    let sr = SrSettings::new(url.clone());
    let reg =
        post_schema(&sr, "orders-value".into(), SuppliedSchema::new(None, SchemaType::Avro, V1.into())).await.unwrap();
    // Registering the same schema again is idempotent.
    let again =
        post_schema(&sr, "orders-value".into(), SuppliedSchema::new(None, SchemaType::Avro, V1.into())).await.unwrap();
    assert_eq!(reg.id, again.id);
    // The same schema under another subject shares the id, as in Confluent.
    let other =
        post_schema(&sr, "other-value".into(), SuppliedSchema::new(None, SchemaType::Avro, V1.into())).await.unwrap();
    assert_eq!(reg.id, other.id);
    let fetched = get_schema_by_id(reg.id, &sr).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&fetched.schema).unwrap(), serde_json::from_str::<Value>(V1).unwrap());

    let (s, v) = call(reqwest::Method::POST, format!("{url}/subjects/orders-value"), Some(json!({"schema": V1}))).await;
    assert_eq!((s, v["version"].as_i64(), v["id"].as_u64()), (200, Some(1), Some(reg.id as u64)));
    let (s, v) = call(reqwest::Method::GET, format!("{url}/subjects/orders-value/versions/latest"), None).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(1)));
    let (_, v) = call(reqwest::Method::GET, format!("{url}/subjects"), None).await;
    assert_eq!(v, json!(["orders-value", "other-value"]));
}

#[tokio::test]
async fn compatibility_is_enforced_by_schema_resolution() {
    let (url, _server) = start().await;
    let post = |body: &str| {
        call(reqwest::Method::POST, format!("{url}/subjects/s-value/versions"), Some(json!({"schema": body})))
    };
    assert_eq!(post(V1).await.0, 200);
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{url}/compatibility/subjects/s-value/versions/latest"),
        Some(json!({"schema": V2_BREAKING})),
    )
    .await;
    assert_eq!((s, v["is_compatible"].as_bool()), (200, Some(false)));
    let (s, v) = post(V2_BREAKING).await;
    assert_eq!((s, v["error_code"].as_u64()), (409, Some(409)));
    let (s, v) = post(V2_COMPATIBLE).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = call(reqwest::Method::GET, format!("{url}/subjects/s-value/versions"), None).await;
    assert_eq!(v, json!([1, 2]));
    // With NONE the breaking schema is accepted.
    let (s, _) =
        call(reqwest::Method::PUT, format!("{url}/config/s-value"), Some(json!({"compatibility": "NONE"}))).await;
    assert_eq!(s, 200);
    let (_, v) = call(reqwest::Method::GET, format!("{url}/config/s-value"), None).await;
    assert_eq!(v["compatibilityLevel"], "NONE");
    assert_eq!(post(V2_BREAKING).await.0, 200);
    let (_, v) = call(reqwest::Method::GET, format!("{url}/config"), None).await;
    assert_eq!(v["compatibilityLevel"], "BACKWARD");
}

#[tokio::test]
async fn errors_have_confluent_codes() {
    let (url, _server) = start().await;
    let (s, v) = call(reqwest::Method::GET, format!("{url}/schemas/ids/99"), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (404, Some(40403)));
    let (s, v) = call(reqwest::Method::GET, format!("{url}/subjects/nope/versions/1"), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (404, Some(40401)));
    let (s, v) = call(
        reqwest::Method::POST,
        format!("{url}/subjects/x/versions"),
        Some(json!({"schema": "{\"type\":\"nonsense\"}"})),
    )
    .await;
    assert_eq!((s, v["error_code"].as_u64()), (422, Some(42201)));
    call(reqwest::Method::POST, format!("{url}/subjects/x/versions"), Some(json!({"schema": V1}))).await;
    let (s, v) = call(reqwest::Method::GET, format!("{url}/subjects/x/versions/7"), None).await;
    assert_eq!((s, v["error_code"].as_u64()), (404, Some(40402)));
    let (s, v) = call(reqwest::Method::POST, format!("{url}/subjects/x"), Some(json!({"schema": V2_COMPATIBLE}))).await;
    assert_eq!((s, v["error_code"].as_u64()), (404, Some(40403)));
    // The client path reports a missing id as a non-retriable error.
    let err = get_schema_by_id(99, &SrSettings::new(url)).await.unwrap_err();
    assert!(!err.retriable, "{err:?}");
}

mod common;

/// A registry that requires basic auth: the bridge works with read-only rights once an operator
/// registered the schemas, and stops at once with a message on wrong credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_runs_with_read_only_registry_rights_and_stops_on_wrong_ones() {
    use gzac_portal_bridge::tools::registry::User;
    use gzac_portal_bridge::tools::samples;
    use gzac_portal_bridge::{bridge, client, schemas};
    use std::time::{Duration, Instant};
    let w = common::World::new("sr-auth").await;
    let user = |name: &str, may_write| User { name: name.into(), password: format!("{name}-secret"), may_write };
    let secured = Registry::with_users(vec![user("operator", true), user("bridge", false)]);
    let server = secured.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let as_user = |name: &str, password: &str| {
        let mut c = w.cfg.clone();
        c.registry.url = format!("http://{}", server.addr);
        c.registry.username = Some(name.into());
        c.registry.password = Some(password.into());
        c
    };
    // Without credentials, or read-only, nothing is registered.
    let anonymous = gzac_portal_bridge::config::Config {
        registry: gzac_portal_bridge::config::RegistryConfig {
            username: None,
            password: None,
            ..as_user("x", "x").registry
        },
        ..w.cfg.clone()
    };
    assert!(schemas::register_all(&anonymous.sr_settings().unwrap(), &w.cfg.topic_prefix).await.is_err());
    assert!(schemas::register_all(&as_user("bridge", "bridge-secret").sr_settings().unwrap(), &w.cfg.topic_prefix)
        .await
        .is_err());
    // The operator registers in advance; the bridge then only looks its schemas up.
    let ids =
        schemas::register_all(&as_user("operator", "operator-secret").sr_settings().unwrap(), &w.cfg.topic_prefix)
            .await
            .unwrap();
    let id = ids.iter().find(|(s, _)| s.ends_with("portaal.verzoeken.v1-value")).unwrap().1;
    let p = client::producer(&w.cfg).unwrap();
    client::send(
        &p,
        &w.topic("portaal.verzoeken.v1"),
        "ro-1",
        &client::frame(id, &samples::verzoek("ro-1")).unwrap(),
        None,
    )
    .await
    .unwrap();
    let running = bridge::start(&as_user("bridge", "bridge-secret")).unwrap();
    let recs = w.read_verzoek_outputs(2, Duration::from_secs(60), Duration::from_secs(1)).await;
    running.stop(Duration::from_secs(10)).await.unwrap();
    assert_eq!(recs.len(), 2, "verzoek and terugmelding with read-only registry rights: {recs:#?}");
    let gzac_id = ids.iter().find(|(s, _)| s.ends_with("gzac.verzoeken.v1-value")).unwrap().1;
    let out = recs.iter().find(|r| r.topic == w.topic("gzac.verzoeken.v1")).unwrap();
    assert_eq!(
        out.value.as_deref().unwrap()[1..5],
        gzac_id.to_be_bytes(),
        "framed with the id the operator registered"
    );

    // Wrong password: the route stops within seconds and says what to check.
    let started = Instant::now();
    let running = bridge::start(&as_user("bridge", "wrong")).unwrap();
    tokio::time::timeout(Duration::from_secs(20), running.wait_for_failure()).await.expect("stops within 20 s");
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = format!("{:#}", running.stop(Duration::from_secs(10)).await.unwrap_err());
    assert!(text.contains("registry.username / password"), "{text}");
    server.stop().await;
}
