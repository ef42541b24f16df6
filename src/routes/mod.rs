//! One module per pattern: typed translation and rules, no Kafka. The pipeline runs them.

pub mod verzoek;

use uuid::Uuid;

/// Namespace for the bridge's deterministic (v5) ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0e_55b2_8f3c_4d1e_9b7a_2c4d_6e8f_a0b1);

/// A stable id derived from `parts`: the same input always yields the same id.
pub fn derived_id(parts: &[&str]) -> String {
    Uuid::new_v5(&ID_NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}
