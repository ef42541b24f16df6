//! Every topic name of the contract, in one place (without the deployment's prefix: see
//! `Config::topic`). A test holds this list and `topics.yaml` equal; dead-letter topics are
//! `<input>.dlq` (`pipeline::dlq_topic`).

pub const PORTAAL_VERZOEKEN: &str = "portaal.verzoeken.v1";
pub const GZAC_VERZOEKEN: &str = "gzac.verzoeken.v1";
pub const PORTAAL_ZAAKVERZOEKEN: &str = "portaal.zaakverzoeken.v1";
pub const GZAC_ZAAKVERZOEKEN: &str = "gzac.zaakverzoeken.v1";
pub const GZAC_TAKEN: &str = "gzac.taken.v1";
pub const PORTAAL_TAKEN: &str = "portaal.taken.v1";
pub const PORTAAL_TAAKANTWOORDEN: &str = "portaal.taakantwoorden.v1";
pub const GZAC_TAAKANTWOORDEN: &str = "gzac.taakantwoorden.v1";
pub const GZAC_WEIGERINGEN: &str = "gzac.weigeringen.v1";
pub const GZAC_BERICHTEN: &str = "gzac.berichten.v1";
pub const PORTAAL_BERICHTEN: &str = "portaal.berichten.v1";
pub const PORTAAL_BERICHTEN_GEOPEND: &str = "portaal.berichten-geopend.v1";
pub const GZAC_BERICHTEN_GEOPEND: &str = "gzac.berichten-geopend.v1";
pub const GZAC_NIET_BEREIKT: &str = "gzac.niet-bereikt.v1";
pub const NOTIFICATIES: &str = "notificaties.opdrachten.v1";
pub const PORTAAL_TERUGMELDINGEN: &str = "portaal.terugmeldingen.v1";
pub const PORTAAL_KLANTVOORKEUREN: &str = "portaal.klantvoorkeuren.v1";
pub const GZAC_ZAKEN: &str = "gzac.zaken.v1";
pub const TAKEN_REPARTITION: &str = "gzac-portal-bridge.taken-repartition.v1";
pub const BERICHTEN_REPARTITION: &str = "gzac-portal-bridge.berichten-repartition.v1";
pub const NOTIFICATIES_REPARTITION: &str = "gzac-portal-bridge.notificaties-repartition.v1";
pub const NOTIFICATIES_STATE: &str = "gzac-portal-bridge.notificaties-state.v1";
pub const TAKEN_STATE: &str = "gzac-portal-bridge.taken-state.v1";
pub const ZAAKVERZOEKEN_STATE: &str = "gzac-portal-bridge.zaakverzoeken-state.v1";
pub const VERZOEKEN_STATE: &str = "gzac-portal-bridge.verzoeken-state.v1";
pub const BERICHTEN_STATE: &str = "gzac-portal-bridge.berichten-state.v1";

/// All of them, in `topics.yaml`'s order.
pub const ALL: [&str; 26] = [
    PORTAAL_VERZOEKEN,
    GZAC_VERZOEKEN,
    PORTAAL_ZAAKVERZOEKEN,
    GZAC_ZAAKVERZOEKEN,
    GZAC_TAKEN,
    PORTAAL_TAKEN,
    PORTAAL_TAAKANTWOORDEN,
    GZAC_TAAKANTWOORDEN,
    GZAC_WEIGERINGEN,
    GZAC_BERICHTEN,
    PORTAAL_BERICHTEN,
    PORTAAL_BERICHTEN_GEOPEND,
    GZAC_BERICHTEN_GEOPEND,
    GZAC_NIET_BEREIKT,
    NOTIFICATIES,
    PORTAAL_TERUGMELDINGEN,
    PORTAAL_KLANTVOORKEUREN,
    GZAC_ZAKEN,
    TAKEN_REPARTITION,
    BERICHTEN_REPARTITION,
    NOTIFICATIES_REPARTITION,
    NOTIFICATIES_STATE,
    TAKEN_STATE,
    ZAAKVERZOEKEN_STATE,
    VERZOEKEN_STATE,
    BERICHTEN_STATE,
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_names_are_topics_yaml() {
        let yaml = crate::topology::Topology::load().unwrap();
        let contract: Vec<&str> =
            yaml.topics.iter().map(|t| t.name.as_str()).filter(|n| !n.ends_with(".dlq")).collect();
        assert_eq!(contract, super::ALL);
    }
}
