//! What the collector library reads from one access-log line: the hit, the tracker parameters
//! and the raw events they decode into, or why the line or an event was refused. Pure: a line in,
//! a JSON document out.

use plowline_collector::logformat::{Hit, LogFormat};
use plowline_collector::tracker::RawEvent;
use serde_json::{json, Map, Value};

use crate::pipeline::tracker_payloads;
pub use crate::pipeline::TP2_PATH;

/// Tallies over the lines inspected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lines read.
    pub lines: u64,
    /// Lines that did not parse in the log format, or are not a tracker hit.
    pub refused_lines: u64,
    /// Events decoded.
    pub events: u64,
    /// Events refused for tracker-protocol or schema violations.
    pub refused_events: u64,
}

/// Inspects one line (without its line break) read with `format`.
pub fn inspect_line(format: &LogFormat, line: &[u8], counts: &mut Counts) -> Value {
    counts.lines += 1;
    let record = match format.parse(line) {
        Ok(record) => record,
        Err(error) => {
            counts.refused_lines += 1;
            return json!({ "error": error.to_string() });
        }
    };
    let hit = match record.hit() {
        Ok(hit) => hit,
        Err(error) => {
            counts.refused_lines += 1;
            return json!({ "error": error.to_string() });
        }
    };
    let payloads = match tracker_payloads(&hit) {
        Ok((_, payloads)) => payloads,
        Err(error) => {
            counts.refused_lines += 1;
            return json!({ "hit": hit_json(&hit), "error": error.to_string() });
        }
    };
    let events: Vec<Value> = payloads
        .iter()
        .map(|params| {
            counts.events += 1;
            match RawEvent::from_params(params) {
                Ok(event) => json!({ "params": params, "event": event }),
                Err(rejected) => {
                    counts.refused_events += 1;
                    json!({ "params": params, "violations": rejected.violations })
                }
            }
        })
        .collect();
    json!({ "hit": hit_json(&hit), "events": events })
}

fn hit_json(hit: &Hit<'_>) -> Value {
    let mut out = Map::new();
    out.insert("collector_tstamp_ms".into(), hit.collector_tstamp_ms.into());
    out.insert("method".into(), lossy(&hit.method));
    out.insert("uri".into(), lossy(&hit.uri));
    if let Some(status) = hit.status {
        out.insert("status".into(), status.into());
    }
    let optional = [
        ("remote_addr", &hit.remote_addr),
        ("x_forwarded_for", &hit.x_forwarded_for),
        ("host", &hit.host),
        ("referer", &hit.referer),
        ("user_agent", &hit.user_agent),
        ("uid_got", &hit.uid_got),
        ("uid_set", &hit.uid_set),
        ("request_id", &hit.request_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            out.insert(name.into(), lossy(value));
        }
    }
    Value::Object(out)
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical_line(uri: &str, method: &str, body: &str) -> Vec<u8> {
        let mut line = Vec::new();
        LogFormat::canonical().write_line(
            |var| match var {
                "msec" => Some(b"1700000000.123".as_slice()),
                "request_method" => Some(method.as_bytes()),
                "request_uri" => Some(uri.as_bytes()),
                "status" => Some(b"200".as_slice()),
                "request_body" => (!body.is_empty()).then_some(body.as_bytes()),
                _ => None,
            },
            &mut line,
        );
        line.pop(); // the line break
        line
    }

    #[test]
    fn a_get_hit_becomes_one_event() {
        let mut counts = Counts::default();
        let line = canonical_line("/i?e=pv&p=web&url=https%3A%2F%2Fa.example%2F", "GET", "");
        let out = inspect_line(&LogFormat::canonical(), &line, &mut counts);
        assert_eq!(out["hit"]["collector_tstamp_ms"], 1_700_000_000_123_i64);
        assert_eq!(out["events"][0]["params"]["url"], "https://a.example/");
        assert_eq!(out["events"][0]["event"]["event"], "page_view");
        assert_eq!(
            counts,
            Counts {
                lines: 1,
                refused_lines: 0,
                events: 1,
                refused_events: 0
            }
        );
    }

    #[test]
    fn a_tp2_post_becomes_one_event_per_element() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","p":"web"},{"e":"zz","p":"web"}]}"#;
        let mut counts = Counts::default();
        let line = canonical_line(std::str::from_utf8(TP2_PATH).unwrap(), "POST", body);
        let out = inspect_line(&LogFormat::canonical(), &line, &mut counts);
        assert_eq!(out["events"].as_array().unwrap().len(), 2);
        assert_eq!(out["events"][1]["violations"][0]["field"], "e");
        assert_eq!((counts.events, counts.refused_events), (2, 1));
    }

    #[test]
    fn bad_lines_say_why() {
        let mut counts = Counts::default();
        let out = inspect_line(&LogFormat::canonical(), b"garbage", &mut counts);
        assert!(out["error"].as_str().unwrap().contains("byte"), "{out}");
        let line = canonical_line("/favicon.ico", "GET", "");
        let out = inspect_line(&LogFormat::canonical(), &line, &mut counts);
        assert!(
            out["error"]
                .as_str()
                .unwrap()
                .starts_with("not a tracker hit"),
            "{out}"
        );
        assert_eq!(counts.refused_lines, 2);
    }
}
