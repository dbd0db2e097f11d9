//! Bad rows as loader input: a loader reading `tracker-bad` stores them in the sink's bad-row
//! table (ClickHouse) or indices (Elasticsearch) instead of taking them for broken events.
//!
//! A document is a bad row when it is a JSON object whose top-level `schema` starts with
//! [`SCHEMA_PREFIX`] (Snowplow's bad-row vendor), whatever topic or file it was read from. An
//! enriched event never has a top-level `schema` and always has `event_id` and
//! `collector_tstamp`, which a bad row never has; so the sinks look for a bad row only in a
//! document that did not read as an enriched event, and good events pay nothing for it.
//!
//! The fields kept are those every bad-row schema shares: the type (from the schema), the
//! processor's artifact and version, `failure` (with its `timestamp`) and `payload`. The
//! [`BadRowDoc::row_id`] is the SHA-256 of the whole document, so a bad row delivered twice is
//! stored under one id (ClickHouse sorting key, Elasticsearch `_id`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::clickhouse::encoder::parse_iso8601_ms;
use crate::badrow::BadRowType;

/// The start of every bad-row schema URI.
pub const SCHEMA_PREFIX: &str = "iglu:com.snowplowanalytics.snowplow.badrows/";

/// A bad row read for loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRowDoc {
    /// The schema URI, e.g. `iglu:com.snowplowanalytics.snowplow.badrows/size_violation/jsonschema/1-0-0`.
    pub schema: String,
    /// The type: the schema's name (`size_violation`, `tracker_protocol_violations`, …).
    pub kind: String,
    /// `data.failure.timestamp` in milliseconds since the epoch, when it is an ISO 8601 UTC
    /// timestamp.
    pub failure_tstamp_ms: Option<i64>,
    /// `data.processor.artifact` (`''` when absent).
    pub processor_artifact: String,
    /// `data.processor.version` (`''` when absent).
    pub processor_version: String,
    /// `data.failure` as JSON (`null` when absent).
    pub failure: String,
    /// `data.payload`: the text when it is a JSON string, else the JSON (`null` when absent).
    pub payload: String,
    /// The SHA-256 of the whole document, in hexadecimal.
    pub row_id: String,
}

impl BadRowDoc {
    /// Whether a loader made it (`loader_parsing_error`, `loader_runtime_error`): a loader that
    /// cannot store one does not wrap it into another bad row (see the runner).
    pub fn is_from_a_loader(&self) -> bool {
        self.kind == BadRowType::LoaderParsingError.name()
            || self.kind == BadRowType::LoaderRuntimeError.name()
    }
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(default)]
    processor: Option<Processor>,
    #[serde(borrow, default)]
    failure: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Processor {
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct Failure<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

/// Reads `json` as a bad row: `None` when it is not one (not a JSON object, or no bad-row
/// `schema`). Fields of an unexpected shape are kept as they are (`failure`, `payload`) or left
/// empty; a bad row is never refused for its content here.
pub fn recognise(json: &[u8]) -> Option<BadRowDoc> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let top: Top<'_> = serde_json::from_slice(json).ok()?;
    let schema = top.schema?;
    let rest = schema.strip_prefix(SCHEMA_PREFIX)?;
    let kind = rest.split('/').next().unwrap_or_default().to_owned();
    let data: Data<'_> = top
        .data
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let processor = data.processor.unwrap_or_default();
    let failure_tstamp_ms = data
        .failure
        .and_then(|raw| serde_json::from_str::<Failure<'_>>(raw.get()).ok())
        .and_then(|f| f.timestamp)
        .and_then(|t| parse_iso8601_ms(&t));
    let payload = match data.payload {
        None => "null".to_owned(),
        Some(raw) => match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(text) => text.into_owned(),
            Err(_) => raw.get().to_owned(),
        },
    };
    Some(BadRowDoc {
        kind,
        failure_tstamp_ms,
        processor_artifact: processor.artifact.unwrap_or_default(),
        processor_version: processor.version.unwrap_or_default(),
        failure: data.failure.map_or("null", RawValue::get).to_owned(),
        payload,
        row_id: row_id(json),
        schema: schema.into_owned(),
    })
}

/// The SHA-256 of `json`, in lower-case hexadecimal.
pub fn row_id(json: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(json);
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::badrow::BadRow;

    #[test]
    fn a_processor_bad_row_is_recognised_with_its_fields() {
        let row = BadRow::format_violation(b"garbage line", "nginx", "no quote", 1_700_000_000_123);
        let mut json = Vec::new();
        row.write_line(&mut json);
        let doc = recognise(&json).unwrap();
        assert_eq!(doc.kind, "collector_payload_format_violation");
        assert_eq!(
            doc.schema,
            BadRowType::CollectorPayloadFormatViolation.schema()
        );
        assert_eq!(doc.failure_tstamp_ms, Some(1_700_000_000_123));
        assert_eq!(doc.processor_artifact, "plowline-processor");
        assert!(!doc.processor_version.is_empty());
        assert_eq!(doc.payload, "garbage line");
        let failure: serde_json::Value = serde_json::from_str(&doc.failure).unwrap();
        assert_eq!(failure["loader"], "nginx");
        assert_eq!(doc.row_id.len(), 64);
        assert_eq!(doc.row_id, recognise(&json).unwrap().row_id);
        assert!(!doc.is_from_a_loader());
        let loader = BadRow::loader_parsing_error(b"x", &["no".into()], 0);
        let mut json = Vec::new();
        loader.write_line(&mut json);
        assert!(recognise(&json).unwrap().is_from_a_loader());
    }

    #[test]
    fn only_top_level_bad_row_schemas_count() {
        for not in [
            &b"not json"[..],
            b"[1]",
            br#"{"event_id":"x"}"#,
            br#"{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":{}}"#,
            br#"{"contexts":{"schema":"iglu:com.snowplowanalytics.snowplow.badrows/x/jsonschema/1-0-0"}}"#,
            br#"{"schema":7}"#,
        ] {
            assert_eq!(recognise(not), None, "{}", String::from_utf8_lossy(not));
        }
        // Odd shapes are kept, not refused.
        let odd = br#"{"schema":"iglu:com.snowplowanalytics.snowplow.badrows/odd/jsonschema/1-0-0","data":{"failure":{"timestamp":"yesterday"},"payload":{"a":1}}}"#;
        let doc = recognise(odd).unwrap();
        assert_eq!(doc.kind, "odd");
        assert_eq!(doc.failure_tstamp_ms, None);
        assert_eq!(doc.payload, r#"{"a":1}"#);
        assert_eq!(doc.processor_artifact, "");
        let bare = br#"{"schema":"iglu:com.snowplowanalytics.snowplow.badrows/bare/jsonschema/1-0-0","data":3}"#;
        let doc = recognise(bare).unwrap();
        assert_eq!(
            (doc.failure.as_str(), doc.payload.as_str()),
            ("null", "null")
        );
    }
}
