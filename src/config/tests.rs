use super::*;

#[test]
fn defaults_load_and_env_overrides() {
    let env = vec![
        ("GZAC_BRIDGE_BOOTSTRAP_SERVERS".to_string(), "k1:9093".to_string()),
        ("GZAC_BRIDGE_KAFKA__SASL_MECHANISMS".to_string(), "SCRAM-SHA-512".to_string()),
        ("GZAC_BRIDGE_KAFKA_CONSUMER__SESSION_TIMEOUT_MS".to_string(), "6000".to_string()),
    ];
    let c = Config::load_with_env(None, &env).unwrap();
    assert_eq!(c.bootstrap_servers, "k1:9093");
    assert_eq!(c.kafka["sasl.mechanisms"], "SCRAM-SHA-512");
    assert_eq!(c.kafka_consumer["session.timeout.ms"], "6000");
    assert!(!c.kafka.contains_key("session.timeout.ms") && c.kafka_producer.is_empty());
    assert_eq!(c.pipeline.batch_max_interval, Duration::from_millis(20));
}

#[test]
fn an_unknown_environment_variable_is_refused() {
    let env = vec![("GZAC_BRIDGE_BOOTSTRAP_SERVER".to_string(), "k1:9093".to_string())];
    let err = Config::load_with_env(None, &env).unwrap_err().to_string();
    assert!(err.contains("GZAC_BRIDGE_BOOTSTRAP_SERVER"), "{err}");
    let known = vec![("GZAC_BRIDGE_LOG_FORMAT".to_string(), "json".to_string())];
    assert!(Config::load_with_env(None, &known).is_ok());
}

#[test]
fn the_registry_password_is_never_printed() {
    let env = vec![
        ("GZAC_BRIDGE_REGISTRY_PASSWORD".to_string(), "s3cr3t-pw".to_string()),
        ("GZAC_BRIDGE_KAFKA__SASL_PASSWORD".to_string(), "k4fka-pw".to_string()),
    ];
    let c = Config::load_with_env(None, &env).unwrap();
    assert_eq!(c.registry.password.as_deref(), Some("s3cr3t-pw"));
    assert_eq!(c.kafka["sasl.password"], "k4fka-pw");
    assert!(!format!("{c:?}").contains("s3cr3t-pw") && !format!("{c:?}").contains("k4fka-pw"));
    assert!(!serde_yaml::to_string(&c).unwrap().contains("s3cr3t-pw"));
}

#[test]
fn managed_kafka_property_is_refused() {
    let env = vec![("GZAC_BRIDGE_KAFKA__ISOLATION_LEVEL".to_string(), "read_uncommitted".to_string())];
    let err = Config::load_with_env(None, &env).unwrap_err().to_string();
    assert!(err.contains("kafka.isolation.level is managed"), "{err}");
    let env = vec![("GZAC_BRIDGE_KAFKA_PRODUCER__TRANSACTIONAL_ID".to_string(), "x".to_string())];
    let err = Config::load_with_env(None, &env).unwrap_err().to_string();
    assert!(err.contains("kafka_producer.transactional.id is managed"), "{err}");
}

#[test]
fn communication_settings_are_checked() {
    let load = |yaml: &str| {
        let path = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, yaml).unwrap();
        Config::load(Some(&path)).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(load("notificaties:\n  stille_uren: { van: \"21:00\", tot: \"08:00\", kanalen: [sms] }\n"), Ok(()));
    let err = load("notificaties:\n  stille_uren: { van: \"25:00\", tot: \"08:00\", kanalen: [sms] }\n").unwrap_err();
    assert!(err.contains("HH:MM"), "{err}");
    let err =
        load("notificaties:\n  escalatie:\n    berichten:\n      handelingsperspectieven: [lezen]\n").unwrap_err();
    assert!(err.contains("lezen"), "{err}");
    let err = Config::load_with_env(None, &[("GZAC_BRIDGE_CLOCK_START".into(), "morgen".into())]).unwrap_err();
    assert!(err.to_string().contains("clock_start"), "{err}");
    let c = Config::load_with_env(None, &[("GZAC_BRIDGE_CLOCK_START".into(), "2027-03-01T21:10:00+01:00".into())]);
    assert_eq!(c.unwrap().pipeline.clock_start.as_deref(), Some("2027-03-01T21:10:00+01:00"));
}

#[test]
fn the_shutdown_bound_follows_the_session_timeout() {
    let session = |ms: &str| ("GZAC_BRIDGE_KAFKA_CONSUMER__SESSION_TIMEOUT_MS".to_string(), ms.to_string());
    assert_eq!(Config::load_with_env(None, &[]).unwrap().shutdown_timeout(), Duration::from_secs(8));
    let short = Config::load_with_env(None, &[session("6000")]).unwrap();
    assert_eq!(short.shutdown_timeout(), Duration::from_secs(3));
    let path = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, "pipeline:\n  shutdown_timeout: 8s\n").unwrap();
    let err = Config::load_with_env(Some(&path), &[session("6000")]).unwrap_err().to_string();
    assert!(err.contains("must stay below the consumers' session.timeout.ms"), "{err}");
    assert!(Config::load_with_env(Some(&path), &[session("10000")]).is_ok());
}

#[test]
fn unknown_field_is_refused() {
    let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, "pipeline:\n  batch_max_recrods: 3\n").unwrap();
    let err = Config::load(Some(&dir)).unwrap_err().to_string();
    assert!(err.contains("batch_max_recrods"), "{err}");
}

/// Two municipalities: shared settings plus each one's own, every id, prefix and OIN distinct.
pub(crate) const TWO_GEMEENTEN: &str = r#"
notificaties:
  portaal_url: "https://mijn.gedeeld.example"
gemeenten:
  - id: utrecht
    oin: "00000001002220647000"
    topic_prefix: "utrecht."
    notificaties:
      portaal_url: "https://mijn.utrecht.example"
      templates:
        bericht:
          email: { nld: "11111111-51e4-4b53-9d7a-2f6c1b8e4a01" }
    acls:
      principals: { portal: "User:utrecht-portaal" }
  - id: zeist
    oin: "00000001003214345000"
    topic_prefix: "zeist."
"#;

fn load_yaml(yaml: &str) -> Result<Config, ConfigError> {
    let path = std::env::temp_dir().join(format!("gemeenten-{}.yaml", uuid::Uuid::new_v4()));
    std::fs::write(&path, yaml).unwrap();
    let loaded = Config::load_with_env(Some(&path), &[]);
    let _ = std::fs::remove_file(&path);
    loaded
}

#[test]
fn each_municipality_gets_the_shared_settings_with_its_own_laid_over_them() {
    let cfg = load_yaml(TWO_GEMEENTEN).unwrap();
    let g = cfg.gemeenten().unwrap();
    assert_eq!(g.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["utrecht", "zeist"]);
    let (utrecht, zeist) = (&g[0].cfg, &g[1].cfg);
    assert_eq!(utrecht.topic("portaal.verzoeken.v1"), "utrecht.portaal.verzoeken.v1");
    assert_eq!(zeist.ce_source(), "urn:nld:oin:00000001003214345000:systeem:gzac-portal-bridge");
    assert_eq!(utrecht.notificaties.portaal_url, "https://mijn.utrecht.example");
    assert_eq!(zeist.notificaties.portaal_url, "https://mijn.gedeeld.example", "shared unless its own");
    // A section merges key by key: utrecht's own bericht email template, the shared sms one.
    assert_eq!(utrecht.notificaties.templates.bericht.email["nld"], "11111111-51e4-4b53-9d7a-2f6c1b8e4a01");
    assert_eq!(utrecht.notificaties.templates.bericht.sms, zeist.notificaties.templates.bericht.sms);
    assert_eq!(utrecht.role_prefix("portal"), "utrecht.portal.");
    assert_eq!(utrecht.role_prefix("bridge"), cfg.role_prefix("bridge"), "one bridge for all");
    // Without `gemeenten`, the one municipality the file describes.
    let one = Config::defaults().gemeenten().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].cfg.topic_prefix, "");
}

#[test]
fn municipalities_that_could_share_topics_or_settings_they_cannot_own_are_refused() {
    let same_prefix = TWO_GEMEENTEN.replace("topic_prefix: \"zeist.\"", "topic_prefix: \"utrecht.\"");
    let err = load_yaml(&same_prefix).unwrap_err().to_string();
    assert!(err.contains("same topic_prefix"), "{err}");
    let same_oin = TWO_GEMEENTEN.replace("00000001003214345000", "00000001002220647000");
    assert!(load_yaml(&same_oin).unwrap_err().to_string().contains("same oin"));
    let shared_only = TWO_GEMEENTEN
        .replace("    topic_prefix: \"zeist.\"", "    topic_prefix: \"zeist.\"\n    bootstrap_servers: x:1");
    let err = load_yaml(&shared_only).unwrap_err().to_string();
    assert!(err.contains("gemeenten.zeist.bootstrap_servers cannot differ"), "{err}");
    let bad_template = TWO_GEMEENTEN.replace("11111111-51e4", "not-a-uuid");
    assert!(load_yaml(&bad_template).unwrap_err().to_string().contains("gemeenten.utrecht"));
}

#[test]
fn the_tools_take_one_municipality_by_its_id() {
    let cfg = load_yaml(TWO_GEMEENTEN).unwrap();
    assert_eq!(cfg.of_gemeente(Some("zeist")).unwrap().topic_prefix, "zeist.");
    assert!(cfg.of_gemeente(None).unwrap_err().to_string().contains("--gemeente"));
    assert!(cfg.of_gemeente(Some("amersfoort")).unwrap_err().to_string().contains("no such municipality"));
    assert_eq!(Config::defaults().of_gemeente(None).unwrap().topic_prefix, "");
}
