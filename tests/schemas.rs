//! The Rust types and schemas/*.avsc agree, and no schema change breaks BACKWARD compatibility
//! with the version committed in git (HEAD): a consumer on the new schema must read old records.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use gzac_portal_bridge::schemas::{catalogue, file, to_json};
use std::path::Path;
use std::process::Command;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

#[test]
fn rust_types_and_avsc_files_agree() {
    let mut drift = Vec::new();
    for e in catalogue() {
        let path = file(dir(), e.name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let from_file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let from_type: serde_json::Value = serde_json::from_str(&to_json(&(e.schema)())).unwrap();
        Schema::parse_str(&text).unwrap_or_else(|err| panic!("{} is not valid Avro: {err}", path.display()));
        if from_file != from_type {
            drift.push(e.name);
        }
    }
    assert!(
        drift.is_empty(),
        "these .avsc files differ from their Rust types: {drift:?}; run `cargo run -- schemas export` and review the diff"
    );
}

#[test]
fn every_avsc_file_is_in_the_catalogue() {
    let names: Vec<String> = catalogue().iter().map(|e| format!("{}.avsc", e.name)).collect();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(names.contains(&name), "{name} is not in schemas::catalogue()");
    }
}

/// Can a reader on `new` read every record written with `old`?
fn backward_compatible(old: &Schema, new: &Schema) -> bool {
    matches!(SchemaCompatibility::can_read(old, new), Ok(Compatibility::Full))
}

#[test]
fn schemas_stay_backward_compatible_with_the_committed_version() {
    let root = env!("CARGO_MANIFEST_DIR");
    let git = Command::new("git")
        .args(["-C", root, "rev-parse", "HEAD"])
        .output()
        .expect("git is needed to compare schemas with their committed version: install git (apt-get install git)");
    assert!(git.status.success(), "not a git checkout with commits: {}", String::from_utf8_lossy(&git.stderr));
    let mut broken = Vec::new();
    for e in catalogue() {
        let rel = format!("schemas/{}.avsc", e.name);
        let old = Command::new("git").args(["-C", root, "show", &format!("HEAD:{rel}")]).output().unwrap();
        if !old.status.success() {
            continue; // a new schema: nothing committed to stay compatible with
        }
        let old = Schema::parse_str(&String::from_utf8_lossy(&old.stdout)).unwrap();
        let new = Schema::parse_str(&std::fs::read_to_string(Path::new(root).join(&rel)).unwrap()).unwrap();
        if !backward_compatible(&old, &new) {
            broken.push(rel);
        }
    }
    assert!(broken.is_empty(), "schema changes that break BACKWARD compatibility: {broken:?}");
}

#[test]
fn the_compatibility_check_catches_breaking_changes() {
    let old = Schema::parse_str(&std::fs::read_to_string(file(dir(), "nl.gzac.portaal.Verzoek")).unwrap()).unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&old).unwrap();
    // A new required field without default: old records lack it.
    json["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "kanaal", "type": "string"}));
    let breaking = Schema::parse(&json).unwrap();
    assert!(!backward_compatible(&old, &breaking));
    // The same field with a default is fine.
    json["fields"].as_array_mut().unwrap().last_mut().unwrap()["default"] = serde_json::json!("web");
    assert!(backward_compatible(&old, &Schema::parse(&json).unwrap()));
    // Changing a field's type breaks.
    let mut json: serde_json::Value = serde_json::to_value(&old).unwrap();
    json["fields"][0]["type"] = serde_json::json!("long");
    assert!(!backward_compatible(&old, &Schema::parse(&json).unwrap()));
}

#[test]
fn records_round_trip_through_their_schemas() {
    use apache_avro::AvroSchema;
    use gzac_portal_bridge::codec::{encode_with_id, Codec};
    use gzac_portal_bridge::model::portaal;
    use gzac_portal_bridge::tools::samples;
    let v = samples::verzoek("rt-1");
    let bytes = encode_with_id(7, &portaal::Verzoek::get_schema(), apache_avro::to_value(&v).unwrap()).unwrap();
    let (id, mut body) = Codec::frame(&bytes).unwrap();
    assert_eq!(id, 7);
    let schema = portaal::Verzoek::get_schema();
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&schema, &mut body, Some(&schema)).unwrap();
    let back: portaal::Verzoek = apache_avro::from_value(&value).unwrap();
    assert_eq!(back, v);
}
