//! Snowplow bad rows: every line or event that fails becomes one, with all its reasons.
//!
//! A bad row is self-describing JSON,
//! `{"schema":"iglu:com.snowplowanalytics.snowplow.badrows/<type>/jsonschema/<version>",
//! "data":{"processor":{…},"failure":{…},"payload":{…}}}`, with the field names of Snowplow's
//! public bad-row schemas. Bad rows are rare, so they are built as [`serde_json::Value`]s; the
//! hot path (good events) never touches this module.

use std::fmt;

use plowline_collector::logformat::Hit;
use plowline_collector::tracker::{Params, Violation};
use plowline_collector::uid::Uid;
use serde_json::{json, Map, Value};

use crate::output::json::{write_iso8601, write_json_event};
use crate::EnrichedEvent;

/// The artifact named in every bad row's `processor`.
pub const ARTIFACT: &str = "plowline-processor";

/// How many bytes of an oversized line a `size_violation` keeps.
pub const SIZE_VIOLATION_PAYLOAD_BYTES: usize = 1024;

/// The Iglu vendor of Snowplow's tracker protocol, named in adapter and protocol failures.
const TRACKER_VENDOR: &str = "com.snowplowanalytics.snowplow";

/// The family of a bad row, which names its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadRowType {
    /// A line longer than `max_line_bytes`.
    SizeViolation,
    /// A line that does not parse in the log format.
    CollectorPayloadFormatViolation,
    /// A hit that is not a tracker hit, or a tp2 body that cannot be read.
    AdapterFailures,
    /// An event whose parameters break the tracker protocol.
    TrackerProtocolViolations,
    /// An event whose self-describing JSON is not valid JSON, not self-describing, or of the
    /// wrong schema.
    SchemaViolations,
    /// An event that an enrichment failed on.
    EnrichmentFailures,
    /// An enriched event a loader could not read (not JSON, no `event_id`, a field of the wrong
    /// type).
    LoaderParsingError,
    /// An enriched event a sink refused for its content (an Elasticsearch 400, a ClickHouse row
    /// it cannot store).
    LoaderRuntimeError,
}

impl BadRowType {
    /// Every type, for counters.
    pub const ALL: [BadRowType; 8] = [
        BadRowType::SizeViolation,
        BadRowType::CollectorPayloadFormatViolation,
        BadRowType::AdapterFailures,
        BadRowType::TrackerProtocolViolations,
        BadRowType::SchemaViolations,
        BadRowType::EnrichmentFailures,
        BadRowType::LoaderParsingError,
        BadRowType::LoaderRuntimeError,
    ];

    /// The schema name: `size_violation`, `tracker_protocol_violations`, ….
    pub fn name(self) -> &'static str {
        match self {
            BadRowType::SizeViolation => "size_violation",
            BadRowType::CollectorPayloadFormatViolation => "collector_payload_format_violation",
            BadRowType::AdapterFailures => "adapter_failures",
            BadRowType::TrackerProtocolViolations => "tracker_protocol_violations",
            BadRowType::SchemaViolations => "schema_violations",
            BadRowType::EnrichmentFailures => "enrichment_failures",
            BadRowType::LoaderParsingError => "loader_parsing_error",
            BadRowType::LoaderRuntimeError => "loader_runtime_error",
        }
    }

    /// The schema version this processor writes.
    pub fn version(self) -> &'static str {
        match self {
            BadRowType::SizeViolation
            | BadRowType::CollectorPayloadFormatViolation
            | BadRowType::AdapterFailures => "1-0-0",
            BadRowType::TrackerProtocolViolations => "1-0-1",
            BadRowType::SchemaViolations | BadRowType::EnrichmentFailures => "2-0-1",
            BadRowType::LoaderParsingError => "2-0-0",
            BadRowType::LoaderRuntimeError => "1-0-1",
        }
    }

    /// The full Iglu URI of the schema.
    pub fn schema(self) -> String {
        format!(
            "iglu:com.snowplowanalytics.snowplow.badrows/{}/jsonschema/{}",
            self.name(),
            self.version()
        )
    }
}

impl fmt::Display for BadRowType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One bad row: its type, its `failure` and its `payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// The family, which names the schema.
    pub kind: BadRowType,
    /// `data.failure`: a timestamp and the messages.
    pub failure: Value,
    /// `data.payload`: the raw input, as the type's schema lays it out.
    pub payload: Value,
}

impl BadRow {
    /// A line of `actual` bytes over the `max` allowed; keeps the first
    /// [`SIZE_VIOLATION_PAYLOAD_BYTES`] bytes.
    pub fn size_violation(line: &[u8], max: usize, now_ms: i64) -> BadRow {
        let head = &line[..line.len().min(SIZE_VIOLATION_PAYLOAD_BYTES)];
        BadRow {
            kind: BadRowType::SizeViolation,
            failure: json!({
                "timestamp": iso(now_ms),
                "maximumAllowedSizeBytes": max,
                "actualSizeBytes": line.len(),
                "expectation": format!("a log line of at most {max} bytes"),
            }),
            payload: lossy(head),
        }
    }

    /// A line that the log format (`loader`, its source) could not parse.
    pub fn format_violation(line: &[u8], loader: &str, error: &str, now_ms: i64) -> BadRow {
        BadRow {
            kind: BadRowType::CollectorPayloadFormatViolation,
            failure: json!({
                "timestamp": iso(now_ms),
                "loader": loader,
                "message": { "error": error },
            }),
            payload: lossy(line),
        }
    }

    /// A hit the tracker adapters do not accept: `field` (`path`, `body`) with `value` is not
    /// what `expectation` says.
    pub fn adapter_failure(
        line: &[u8],
        hit: &Hit<'_>,
        version: &str,
        failure: (&str, &[u8], &str),
        now_ms: i64,
    ) -> BadRow {
        let (field, value, expectation) = failure;
        let mut payload = collector_payload(hit, version, None);
        payload.insert("line".into(), lossy(line));
        BadRow {
            kind: BadRowType::AdapterFailures,
            failure: json!({
                "timestamp": iso(now_ms),
                "vendor": TRACKER_VENDOR,
                "version": version,
                "messages": [{
                    "field": field,
                    "value": lossy(truncate_bytes(value, 1024)),
                    "expectation": expectation,
                }],
            }),
            payload: Value::Object(payload),
        }
    }

    /// An event whose parameters break the tracker protocol: every violation, in one row.
    pub fn tracker_protocol(
        hit: &Hit<'_>,
        version: &str,
        params: &Params<'_>,
        violations: &[Violation],
        now_ms: i64,
    ) -> BadRow {
        let messages: Vec<Value> = violations
            .iter()
            .map(|v| json!({ "field": v.param, "value": v.value, "expectation": v.kind.to_string() }))
            .collect();
        BadRow {
            kind: BadRowType::TrackerProtocolViolations,
            failure: json!({
                "timestamp": iso(now_ms),
                "vendor": TRACKER_VENDOR,
                "version": version,
                "messages": messages,
            }),
            payload: Value::Object(collector_payload(hit, version, Some(params))),
        }
    }

    /// An event whose self-describing JSON could not be read: every violation, in one row, with
    /// the event as far as it was filled.
    pub fn schema_violations(
        hit: &Hit<'_>,
        version: &str,
        params: &Params<'_>,
        violations: &[Violation],
        partial: &EnrichedEvent,
        now_ms: i64,
    ) -> BadRow {
        let messages: Vec<Value> = violations
            .iter()
            .map(|v| json!({ "field": v.param, "value": v.value, "error": v.kind.to_string() }))
            .collect();
        BadRow {
            kind: BadRowType::SchemaViolations,
            failure: json!({ "timestamp": iso(now_ms), "messages": messages }),
            payload: enriched_payload(hit, version, params, partial),
        }
    }

    /// An event that enrichments failed on: every message, with the event as enriched so far.
    pub fn enrichment_failures(
        hit: &Hit<'_>,
        version: &str,
        params: &Params<'_>,
        messages: &[String],
        partial: &EnrichedEvent,
        now_ms: i64,
    ) -> BadRow {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({ "enrichment": null, "message": { "error": m } }))
            .collect();
        BadRow {
            kind: BadRowType::EnrichmentFailures,
            failure: json!({ "timestamp": iso(now_ms), "messages": messages }),
            payload: enriched_payload(hit, version, params, partial),
        }
    }

    /// An enriched event (`payload`, as read from Kafka or a file) that a loader could not read:
    /// every reason.
    pub fn loader_parsing_error(payload: &[u8], errors: &[String], now_ms: i64) -> BadRow {
        let errors: Vec<Value> = errors.iter().map(|e| json!({ "message": e })).collect();
        BadRow {
            kind: BadRowType::LoaderParsingError,
            failure: json!({ "timestamp": iso(now_ms), "type": "RowDecodingError", "errors": errors }),
            payload: lossy(payload),
        }
    }

    /// An enriched event that the sink `loader` (`clickhouse`, `elasticsearch`) refused for its
    /// content, with the sink's reason.
    pub fn loader_runtime_error(loader: &str, payload: &[u8], error: &str, now_ms: i64) -> BadRow {
        BadRow {
            kind: BadRowType::LoaderRuntimeError,
            failure: json!({ "timestamp": iso(now_ms), "loader": loader, "error": error }),
            payload: lossy(payload),
        }
    }

    /// The whole self-describing document.
    pub fn to_value(&self) -> Value {
        json!({
            "schema": self.kind.schema(),
            "data": {
                "processor": { "artifact": ARTIFACT, "version": env!("CARGO_PKG_VERSION") },
                "failure": self.failure,
                "payload": self.payload,
            }
        })
    }

    /// Appends the document as one line of JSON (with its line break) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // A `Value` always serializes.
        let _ = serde_json::to_writer(&mut *out, &self.to_value());
        out.push(b'\n');
    }
}

/// Snowplow's `CollectorPayload`: the hit's metadata, with the event's parameters as the
/// query string when there is one event to blame.
fn collector_payload(
    hit: &Hit<'_>,
    version: &str,
    params: Option<&Params<'_>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("vendor".into(), TRACKER_VENDOR.into());
    out.insert("version".into(), version.into());
    let querystring: Vec<Value> = params
        .map(|params| {
            params
                .iter()
                .map(|p| json!({ "name": &*p.key, "value": p.value() }))
                .collect()
        })
        .unwrap_or_default();
    out.insert("querystring".into(), querystring.into());
    if params.is_none() {
        if let Some(body) = &hit.body {
            out.insert("body".into(), lossy(body));
        }
    }
    out.insert("collector".into(), "plowline-nginx".into());
    out.insert("encoding".into(), "UTF-8".into());
    insert_opt(&mut out, "hostname", hit.host.as_deref());
    out.insert("timestamp".into(), iso(hit.collector_tstamp_ms));
    insert_opt(&mut out, "ipAddress", hit.remote_addr.as_deref());
    insert_opt(&mut out, "useragent", hit.user_agent.as_deref());
    insert_opt(&mut out, "refererUri", hit.referer.as_deref());
    let mut headers = Vec::new();
    if let Some(xff) = hit.x_forwarded_for.as_deref() {
        headers.push(Value::String(format!(
            "X-Forwarded-For: {}",
            String::from_utf8_lossy(xff)
        )));
    }
    out.insert("headers".into(), headers.into());
    let cookie = [hit.uid_got.as_deref(), hit.uid_set.as_deref()]
        .into_iter()
        .flatten()
        .find_map(Uid::parse_logged);
    if let Some((_, uid)) = cookie {
        out.insert("networkUserId".into(), uid.to_uuid_string().into());
    }
    out
}

/// The `payload` of schema violations and enrichment failures: the partially enriched event
/// and the raw event.
fn enriched_payload(
    hit: &Hit<'_>,
    version: &str,
    params: &Params<'_>,
    partial: &EnrichedEvent,
) -> Value {
    let mut buf = Vec::new();
    write_json_event(partial, &mut buf);
    let enriched: Value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
    let parameters: Vec<Value> = params
        .iter()
        .map(|p| json!({ "name": &*p.key, "value": p.value() }))
        .collect();
    let mut raw = collector_payload(hit, version, None);
    raw.remove("querystring");
    raw.remove("body");
    raw.insert("parameters".into(), parameters.into());
    json!({ "enriched": enriched, "raw": raw })
}

fn insert_opt(out: &mut Map<String, Value>, key: &str, value: Option<&[u8]>) {
    if let Some(value) = value {
        out.insert(key.into(), lossy(value));
    }
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn truncate_bytes(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

fn iso(ms: i64) -> Value {
    let mut out = Vec::with_capacity(24);
    write_iso8601(ms, &mut out);
    Value::String(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_follow_the_badrows_vendor() {
        assert_eq!(
            BadRowType::TrackerProtocolViolations.schema(),
            "iglu:com.snowplowanalytics.snowplow.badrows/tracker_protocol_violations/jsonschema/1-0-1"
        );
        assert_eq!(BadRowType::SchemaViolations.version(), "2-0-1");
        assert_eq!(BadRowType::SizeViolation.to_string(), "size_violation");
    }

    #[test]
    fn size_violation_keeps_the_head_and_the_sizes() {
        let line = vec![b'a'; 5000];
        let row = BadRow::size_violation(&line, 4096, 0).to_value();
        assert_eq!(row["data"]["failure"]["actualSizeBytes"], 5000);
        assert_eq!(row["data"]["failure"]["maximumAllowedSizeBytes"], 4096);
        assert_eq!(
            row["data"]["failure"]["timestamp"],
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            row["data"]["payload"].as_str().unwrap().len(),
            SIZE_VIOLATION_PAYLOAD_BYTES
        );
        assert_eq!(row["data"]["processor"]["artifact"], ARTIFACT);
    }

    #[test]
    fn a_written_row_is_one_line() {
        let row = BadRow::format_violation(b"x\ty", "canonical", "bad\nthing", 0);
        let mut out = Vec::new();
        row.write_line(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"\n"));
    }
}
