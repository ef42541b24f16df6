use super::*;

#[test]
fn a_dead_letter_names_the_stage_it_failed_in() {
    assert_eq!(DeadLetterClass::Undecodable.stage(), "VALUE_CONVERTER");
    assert_eq!(DeadLetterClass::ProcessingError.stage(), "TRANSFORMATION");
    assert_eq!(DeadLetterClass::BridgeError.stage(), "TRANSFORMATION");
    assert_eq!(DeadLetterClass::OutputTooLarge.stage(), "KAFKA_PRODUCE");
}

#[test]
fn the_readme_lists_every_dead_letter_class_and_no_other() {
    let readme = include_str!("../../README.md");
    let start = readme.find("Dead-letter classes").expect("the README lists the dead-letter classes");
    let para = &readme[start..start + readme[start..].find("\n\n").unwrap()];
    let named: std::collections::BTreeSet<&str> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.split('-').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase())))
        .collect();
    let all: std::collections::BTreeSet<&str> = DeadLetterClass::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(named, all);
}

#[test]
fn registry_errors_are_classified_by_their_code_not_their_text() {
    let answered = |code: u32, url: &str| {
        let raw: RawError = serde_json::from_value(serde_json::json!({"error_code": code, "message": "x"})).unwrap();
        SRCError::non_retryable_with_cause(raw, &format!("HTTP request to {url} failed"))
    };
    let class = |e: &SRCError| match classify(e) {
        CodecError::BadData { class, .. } => class.as_str(),
        CodecError::Transient(_) => "transient",
        CodecError::Stop(_) => "stop",
    };
    assert_eq!(class(&answered(40403, "/schemas/ids/7")), "unknown-schema-id");
    // A failed request for schema id 140403 during an outage is no missing schema.
    let outage = SRCError::retryable_with_cause(std::io::Error::other("refused"), "GET /schemas/ids/140403 failed");
    assert_eq!(class(&outage), "transient");
    assert_eq!(class(&answered(50001, "/schemas/ids/140403")), "transient");
    assert_eq!(class(&answered(40401, "/schemas/ids/40403")), "transient");
    assert_eq!(class(&answered(40101, "/")), "stop");
    assert_eq!(class(&answered(403, "/")), "stop");
}

#[test]
fn frame_checks_length_and_magic_byte() {
    assert!(matches!(Codec::frame(&[0, 0, 1]), Err(CodecError::BadData { class: DeadLetterClass::TooShort, .. })));
    assert!(matches!(
        Codec::frame(&[7, 0, 0, 0, 1, 2]),
        Err(CodecError::BadData { class: DeadLetterClass::BadMagicByte, .. })
    ));
    let (id, body) = Codec::frame(&[0, 0, 0, 1, 2, 9]).unwrap();
    assert_eq!((id, body), (258, &[9u8][..]));
}
