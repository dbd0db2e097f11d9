//! The index template and ILM policy `prepare` installs. The template's mappings live in
//! `index_template.json` (plain JSON, so that the dashboards' tests can check every Kibana field
//! against it): `keyword` for ids and dimensions (long ones with `ignore_above`, free text with a
//! `text` sub-field), `date` for every `*_tstamp`, `geo_point` for `geo_location`, `integer` /
//! `double` / `boolean` for the typed atomic fields; entities (`contexts_*`,
//! `unstruct_event_*`) are mapped dynamically (strings as `keyword`, numbers as `double`, no
//! date detection) within `index.mapping.total_fields.limit` (fields beyond it are kept in
//! `_source` but not indexed) and `index.mapping.depth.limit`.

use serde_json::{json, Value};

use super::config::{IlmConfig, Target, Validated};

/// The template as shipped, for `index_patterns` `["tracker-events-*"]`.
pub const INDEX_TEMPLATE_JSON: &str = include_str!("index_template.json");

/// The bad rows' template as shipped, for `index_patterns` `["tracker-bad-*"]`: `schema`,
/// `data.processor.*` and `data.failure.timestamp` indexed, the rest kept in `_source` only
/// (`dynamic: false`), so no payload can break the mapping.
pub const BAD_ROWS_TEMPLATE_JSON: &str = include_str!("bad_rows_template.json");

/// The bad rows' template for this configuration: patterns `<bad_index_prefix>-*`.
pub fn bad_rows_template(config: &Validated) -> Value {
    let mut template: Value =
        serde_json::from_str(BAD_ROWS_TEMPLATE_JSON).expect("bad_rows_template.json is JSON");
    template["index_patterns"] = json!([format!("{}-*", config.bad_prefix)]);
    template
}

/// The template for this configuration: patterns for its indices or data stream, the data
/// stream declared, the ILM policy named.
pub fn index_template(config: &Validated) -> Value {
    let mut template: Value =
        serde_json::from_str(INDEX_TEMPLATE_JSON).expect("index_template.json is JSON");
    match &config.target {
        Target::Daily { prefix } => template["index_patterns"] = json!([format!("{prefix}-*")]),
        Target::DataStream { name } => {
            template["index_patterns"] = json!([name]);
            template["data_stream"] = json!({});
        }
    }
    if let Some(ilm) = &config.ilm {
        template["template"]["settings"]["index"]["lifecycle"] = json!({"name": ilm.policy_name});
    }
    template
}

/// The ILM policy: rollover by age and primary shard size for a data stream, then deletion
/// after `delete_after_days` (never when 0).
pub fn ilm_policy(ilm: &IlmConfig, data_stream: bool) -> Value {
    let hot_actions = if data_stream {
        json!({"rollover": {
            "max_age": format!("{}h", ilm.rollover_max_age_hours),
            "max_primary_shard_size": format!("{}gb", ilm.rollover_max_primary_shard_size_gb)
        }})
    } else {
        json!({})
    };
    let mut phases = json!({"hot": {"min_age": "0ms", "actions": hot_actions}});
    if ilm.delete_after_days > 0 {
        phases["delete"] =
            json!({"min_age": format!("{}d", ilm.delete_after_days), "actions": {"delete": {}}});
    }
    json!({"policy": {"_meta": {"managed_by": "plow-processor load elasticsearch"}, "phases": phases}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldVisitor, FIELD_NAMES};
    use crate::sinks::elasticsearch::ElasticsearchConfig;
    use plowline_collector::tracker::SelfDescribing;

    /// The mapping type each atomic field must have, from the event's own visitor.
    struct Expected(Vec<(&'static str, &'static str)>);

    impl FieldVisitor for Expected {
        fn text(&mut self, name: &'static str, _: Option<&str>) {
            self.0.push((name, "keyword"));
        }
        fn int(&mut self, name: &'static str, _: Option<i32>) {
            self.0.push((name, "integer"));
        }
        fn decimal(&mut self, name: &'static str, _: Option<f64>) {
            self.0.push((name, "double"));
        }
        fn boolean(&mut self, name: &'static str, _: Option<bool>) {
            self.0.push((name, "boolean"));
        }
        fn tstamp(&mut self, name: &'static str, _: Option<i64>) {
            self.0.push((name, "date"));
        }
        fn contexts(&mut self, _: &'static str, _: &[SelfDescribing]) {}
        fn unstruct(&mut self, _: &'static str, _: Option<&SelfDescribing>) {}
    }

    #[test]
    fn every_atomic_field_is_mapped_with_its_type() {
        let template: Value = serde_json::from_str(INDEX_TEMPLATE_JSON).unwrap();
        let properties = template["template"]["mappings"]["properties"]
            .as_object()
            .unwrap();
        let mut expected = Expected(Vec::new());
        crate::EnrichedEvent::default().visit(&mut expected);
        assert_eq!(
            expected.0.len(),
            FIELD_NAMES.len() - 3,
            "all but contexts, derived_contexts, unstruct_event"
        );
        for (name, ty) in expected.0 {
            assert_eq!(properties[name]["type"], ty, "{name}");
            assert!(name.ends_with("_tstamp") == (ty == "date"), "{name}");
        }
        assert_eq!(properties["geo_location"]["type"], "geo_point");
        assert_eq!(
            properties.len(),
            FIELD_NAMES.len() - 3 + 2,
            "plus geo_location and @timestamp"
        );
        let settings = &template["template"]["settings"]["index"]["mapping"];
        assert!(settings["total_fields"]["limit"].as_u64().unwrap() <= 5000);
        assert!(settings["depth"]["limit"].as_u64().unwrap() <= 20);
        assert_eq!(template["template"]["mappings"]["date_detection"], false);
    }

    #[test]
    fn patterns_data_stream_and_policy_follow_the_config() {
        let config: ElasticsearchConfig = toml::from_str(
            "endpoints = [\"http://h\"]\nindex_prefix = \"ev\"\n[ilm]\npolicy_name = \"p\"",
        )
        .unwrap();
        let daily = index_template(&config.validate().unwrap());
        assert_eq!(daily["index_patterns"], json!(["ev-*"]));
        assert!(daily.get("data_stream").is_none());
        assert_eq!(
            daily["template"]["settings"]["index"]["lifecycle"]["name"],
            "p"
        );
        let ilm = config.ilm.clone().unwrap();
        let policy = ilm_policy(&ilm, false);
        assert_eq!(policy["policy"]["phases"]["hot"]["actions"], json!({}));
        assert_eq!(policy["policy"]["phases"]["delete"]["min_age"], "30d");
        let stream = ilm_policy(
            &IlmConfig {
                delete_after_days: 0,
                ..ilm
            },
            true,
        );
        assert_eq!(
            stream["policy"]["phases"]["hot"]["actions"]["rollover"]["max_age"],
            "24h"
        );
        assert!(stream["policy"]["phases"].get("delete").is_none());

        let config = ElasticsearchConfig {
            data_stream: Some("logs-ev".into()),
            ilm: None,
            ..config
        };
        let stream = index_template(&config.validate().unwrap());
        assert_eq!(stream["index_patterns"], json!(["logs-ev"]));
        assert_eq!(stream["data_stream"], json!({}));
    }

    #[test]
    fn the_bad_rows_template_follows_the_bad_prefix() {
        let config: ElasticsearchConfig = toml::from_str(
            "endpoints = [\"http://h\"]\nindex_prefix = \"ev\"\nbad_index_prefix = \"oops\"",
        )
        .unwrap();
        let template = bad_rows_template(&config.validate().unwrap());
        assert_eq!(template["index_patterns"], json!(["oops-*"]));
        let shipped: Value = serde_json::from_str(BAD_ROWS_TEMPLATE_JSON).unwrap();
        assert_eq!(shipped["index_patterns"], json!(["tracker-bad-*"]));
        assert_eq!(template["template"], shipped["template"]);
    }
}
