//! The Kubernetes manifests (`deploy/kubernetes/`) against what the binary serves: the probes'
//! paths and the ports are the ones the health endpoint answers on. (CI renders both variants and
//! validates them against the Kubernetes API schemas: `.ci/run`.)

use gzac_portal_bridge::health;
use serde_yaml::Value;
use std::io::{Read, Write};
use std::time::Duration;

fn manifest(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = match p.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*p],
        };
    }
    v.as_str().or_else(|| v.as_u64().map(|_| "")).unwrap_or_else(|| panic!("no {path:?}"))
}

/// The status code of `GET path` on `addr`.
fn status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn the_probes_ask_what_the_health_endpoint_serves_on_its_port() {
    let sts = manifest("statefulset.yaml");
    let bridge = &sts["spec"]["template"]["spec"]["containers"][0];
    let port = &bridge["ports"][0];
    assert_eq!(text(port, &["name"]), "http");
    let container_port = port["containerPort"].as_u64().unwrap();
    // The address the bridge serves on (GZAC_BRIDGE_HEALTH) is the container port.
    let env = bridge["env"].as_sequence().unwrap();
    let health_addr = env.iter().find(|e| e["name"].as_str() == Some("GZAC_BRIDGE_HEALTH")).unwrap();
    let health_addr: std::net::SocketAddr = text(health_addr, &["value"]).parse().unwrap();
    assert_eq!(u64::from(health_addr.port()), container_port);
    let path = |probe: &str| {
        assert_eq!(text(bridge, &[probe, "httpGet", "port"]), "http", "{probe} asks the named port");
        text(bridge, &[probe, "httpGet", "path"]).to_string()
    };
    let (live, ready, startup) = (path("livenessProbe"), path("readinessProbe"), path("startupProbe"));
    assert_eq!((live.as_str(), ready.as_str(), startup.as_str()), ("/health", "/ready", "/health"));
    let monitor = manifest("podmonitor.yaml");
    let scrape = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!((text(scrape, &["port"]), text(scrape, &["path"])), ("http", "/metrics"));
    let service = manifest("service.yaml");
    assert_eq!(text(&service["spec"]["ports"][0], &["targetPort"]), "http");

    // What the binary's health endpoint answers on those paths (200 or 503, never 404).
    let components: health::Components = std::sync::Arc::new(vec![]);
    let addr = health::serve("127.0.0.1:0".parse().unwrap(), components, Duration::from_secs(60)).await.unwrap();
    for p in [live, ready, "/metrics".to_string()] {
        let code = tokio::task::spawn_blocking(move || status(addr, &p)).await.unwrap();
        assert!([200, 503].contains(&code), "GET {addr}: {code}");
    }
    assert_eq!(tokio::task::spawn_blocking(move || status(addr, "/nowhere")).await.unwrap(), 404);
}

#[test]
fn the_pods_run_as_the_restricted_pod_security_standard_asks() {
    let sts = manifest("statefulset.yaml");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(text(pod, &["securityContext", "seccompProfile", "type"]), "RuntimeDefault");
    let c = &pod["containers"][0]["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(c["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["capabilities"]["drop"][0].as_str(), Some("ALL"));
    // Secrets are referenced, never inlined.
    let all = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(!all.contains("kind: Secret"), "a Secret in the manifests");
    // The pod name is the instance id (static membership).
    let env = pod["containers"][0]["env"].as_sequence().unwrap();
    let id = env.iter().find(|e| e["name"].as_str() == Some("GZAC_BRIDGE_INSTANCE_ID")).unwrap();
    assert_eq!(text(id, &["valueFrom", "fieldRef", "fieldPath"]), "metadata.name");
}
