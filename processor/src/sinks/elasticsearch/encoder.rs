//! The `_bulk` body: per document an action line, `{"create":{"_index":…,"_id":<event_id>}}`,
//! then the document itself on one line.
//!
//! The document is the enriched event as `plow-processor run` wrote it; only three fields are
//! read from it: `event_id` (the `_id`, so a re-delivered event lands on the same document),
//! `derived_tstamp` and `collector_tstamp`. The index is `<index_prefix>-YYYY.MM.DD` for the
//! UTC day of `derived_tstamp`, else of `collector_tstamp` (the time Kibana's data view uses);
//! for a data stream it is the stream, and the document gets an `@timestamp` with that same
//! time. A document that is not a JSON object, or lacks a valid `event_id` or
//! `collector_tstamp`, is unreadable with every reason.
//!
//! A document whose top-level `schema` is a Snowplow bad row's (see [`crate::sinks::bad_rows`])
//! is a bad row: it goes as it is to `<bad_prefix>-YYYY.MM.DD`, the day of its
//! `data.failure.timestamp` (else of the load), with `_id` the SHA-256 of the document.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::{OpType, Target};
use crate::output::json::write_iso8601;
use crate::sinks::bad_rows::{self, SCHEMA_PREFIX};

/// Writes `_bulk` lines for one target and operation.
#[derive(Debug, Clone)]
pub struct Encoder {
    target: Target,
    op_type: OpType,
    bad_prefix: String,
}

/// What an encoded document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An enriched event.
    Event,
    /// A bad row.
    BadRow,
}

/// A batch encoded into one `_bulk` body.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    /// Every readable document's two lines, in order.
    pub body: Vec<u8>,
    /// For each readable document: its position in the batch and its lines in `body`.
    pub items: Vec<(usize, Range<usize>)>,
    /// The unreadable documents: position in the batch, and every reason.
    pub unreadable: Vec<(usize, Vec<String>)>,
    /// The positions in the batch of the bad rows among `items`, in order.
    pub bad_rows: Vec<usize>,
}

/// The fields read from a document; the rest is checked to be JSON and skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    collector_tstamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    derived_tstamp: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "@timestamp")]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
}

/// The text of a JSON string without escapes (event ids and timestamps have none).
fn plain_string(raw: &RawValue) -> Option<&str> {
    let text = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    (!text.contains(['\\', '"'])).then_some(text)
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with a real date and time.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let num = |r: Range<usize>| text[r].parse::<u32>().unwrap_or(u32::MAX);
    if b.len() < 20
        || !(digits(0..4)
            && digits(5..7)
            && digits(8..10)
            && digits(11..13)
            && digits(14..16)
            && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return false;
    }
    let fraction = &b[19..b.len() - 1];
    let fraction_ok = fraction.is_empty()
        || (fraction[0] == b'.'
            && (2..=10).contains(&fraction.len())
            && fraction[1..].iter().all(u8::is_ascii_digit));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    fraction_ok
        && (1..=days).contains(&day)
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 60
}

/// Replaces the line breaks of `out[start..]` (whitespace between tokens in valid JSON) with
/// spaces, then ends the line: one line per document.
fn one_line(out: &mut Vec<u8>, start: usize) {
    if out[start..].contains(&b'\n') || out[start..].contains(&b'\r') {
        for b in &mut out[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    out.push(b'\n');
}

/// A field that must be a string of a given form: its text, or why not.
fn field<'a>(
    name: &str,
    raw: Option<&'a RawValue>,
    required: bool,
    form: &str,
    check: fn(&str) -> bool,
    reasons: &mut Vec<String>,
) -> Option<&'a str> {
    let raw = match raw {
        Some(raw) if raw.get() != "null" => raw,
        _ => {
            if required {
                reasons.push(format!("{name} is missing"));
            }
            return None;
        }
    };
    match plain_string(raw).filter(|text| check(text)) {
        Some(text) => Some(text),
        None => {
            let shown: String = raw.get().chars().take(80).collect();
            reasons.push(format!("{name} is not {form}: {shown}"));
            None
        }
    }
}

impl Encoder {
    /// An encoder for `target`; bad rows go to `tracker-bad-YYYY.MM.DD` (see
    /// [`Encoder::with_bad_prefix`]).
    pub fn new(target: Target, op_type: OpType) -> Encoder {
        let op_type = match target {
            Target::DataStream { .. } => OpType::Create,
            Target::Daily { .. } => op_type,
        };
        Encoder {
            target,
            op_type,
            bad_prefix: "tracker-bad".to_owned(),
        }
    }

    /// Bad rows go to `<prefix>-YYYY.MM.DD`.
    pub fn with_bad_prefix(mut self, prefix: &str) -> Encoder {
        prefix.clone_into(&mut self.bad_prefix);
        self
    }

    /// Appends the two lines of `doc` to `out`; on an error `out` is unchanged and every reason
    /// is returned.
    pub fn encode(&self, doc: &[u8], out: &mut Vec<u8>) -> Result<Kind, Vec<String>> {
        // A struct deserializes from an array too: insist on an object first.
        if doc.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            let e = serde_json::from_slice::<serde::de::IgnoredAny>(doc).err();
            let why = e.map_or_else(|| "not an object".to_owned(), |e| e.to_string());
            return Err(vec![format!("not a JSON object: {why}")]);
        }
        let head: Head<'_> = match serde_json::from_slice(doc) {
            Ok(head) => head,
            Err(e) => return Err(vec![format!("not valid JSON: {e}")]),
        };
        if head
            .schema
            .and_then(plain_string)
            .is_some_and(|s| s.starts_with(SCHEMA_PREFIX))
        {
            return self.encode_bad_row(doc, out).map(|()| Kind::BadRow);
        }
        let mut reasons = Vec::new();
        let event_id = field(
            "event_id",
            head.event_id,
            true,
            "a UUID",
            is_uuid,
            &mut reasons,
        );
        let collector = field(
            "collector_tstamp",
            head.collector_tstamp,
            true,
            "an ISO 8601 UTC timestamp",
            is_timestamp,
            &mut reasons,
        );
        let derived = field(
            "derived_tstamp",
            head.derived_tstamp,
            false,
            "an ISO 8601 UTC timestamp",
            is_timestamp,
            &mut reasons,
        );
        let (Some(event_id), Some(collector)) = (event_id, collector) else {
            return Err(reasons);
        };
        if !reasons.is_empty() {
            return Err(reasons);
        }
        let time = derived.unwrap_or(collector);

        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.op_type.as_str().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":\"");
        let inject_timestamp = match &self.target {
            Target::Daily { prefix } => {
                out.extend_from_slice(prefix.as_bytes());
                out.push(b'-');
                let date = time.as_bytes();
                out.extend_from_slice(&date[0..4]);
                out.push(b'.');
                out.extend_from_slice(&date[5..7]);
                out.push(b'.');
                out.extend_from_slice(&date[8..10]);
                false
            }
            Target::DataStream { name } => {
                out.extend_from_slice(name.as_bytes());
                head.timestamp.is_none()
            }
        };
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(event_id.as_bytes());
        out.extend_from_slice(b"\"}}\n");

        let start = out.len();
        if inject_timestamp {
            // The document is an object with at least `event_id`: insert after its `{`.
            let brace = doc.iter().position(|&b| b == b'{').expect("a JSON object");
            out.extend_from_slice(&doc[..=brace]);
            out.extend_from_slice(b"\"@timestamp\":\"");
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b"\",");
            out.extend_from_slice(&doc[brace + 1..]);
        } else {
            out.extend_from_slice(doc);
        }
        one_line(out, start);
        Ok(Kind::Event)
    }

    /// Appends the two lines of the bad row `doc`.
    fn encode_bad_row(&self, doc: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<String>> {
        let row = bad_rows::recognise(doc)
            .ok_or_else(|| vec!["a bad-row schema, but not a readable bad row".to_owned()])?;
        let ms = row.failure_tstamp_ms.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
        });
        let mut time = Vec::with_capacity(24);
        write_iso8601(ms, &mut time);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(self.op_type.as_str().as_bytes());
        out.extend_from_slice(b"\":{\"_index\":\"");
        out.extend_from_slice(self.bad_prefix.as_bytes());
        out.push(b'-');
        out.extend_from_slice(&time[0..4]);
        out.push(b'.');
        out.extend_from_slice(&time[5..7]);
        out.push(b'.');
        out.extend_from_slice(&time[8..10]);
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(row.row_id.as_bytes());
        out.extend_from_slice(b"\"}}\n");
        let start = out.len();
        out.extend_from_slice(doc);
        one_line(out, start);
        Ok(())
    }

    /// Encodes a batch.
    pub fn encode_batch<'d>(&self, docs: impl IntoIterator<Item = &'d [u8]>) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        for (i, doc) in docs.into_iter().enumerate() {
            let start = batch.body.len();
            match self.encode(doc, &mut batch.body) {
                Ok(kind) => {
                    batch.items.push((i, start..batch.body.len()));
                    if kind == Kind::BadRow {
                        batch.bad_rows.push(i);
                    }
                }
                Err(reasons) => batch.unreadable.push((i, reasons)),
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EID: &str = "c6ef3124-b53a-4b13-a233-0123456789ab";

    fn daily() -> Encoder {
        Encoder::new(
            Target::Daily {
                prefix: "tracker-events".into(),
            },
            OpType::Create,
        )
    }

    fn encode(encoder: &Encoder, doc: &str) -> Result<String, Vec<String>> {
        let mut out = b"before\n".to_vec();
        let result = encoder.encode(doc.as_bytes(), &mut out);
        let text = String::from_utf8(out).unwrap();
        match result {
            Ok(_) => Ok(text.strip_prefix("before\n").unwrap().to_owned()),
            Err(reasons) => {
                assert_eq!(text, "before\n", "unchanged on error");
                Err(reasons)
            }
        }
    }

    #[test]
    fn daily_index_from_derived_else_collector_tstamp() {
        let doc = format!(
            r#"{{"event_id":"{EID}","collector_tstamp":"2023-11-14T23:59:59.999Z","derived_tstamp":"2023-11-15T00:00:00.001Z","app_id":"shop"}}"#
        );
        assert_eq!(
            encode(&daily(), &doc).unwrap(),
            format!("{{\"create\":{{\"_index\":\"tracker-events-2023.11.15\",\"_id\":\"{EID}\"}}}}\n{doc}\n")
        );
        let doc =
            format!(r#"{{"collector_tstamp":"2024-02-29T10:00:00.000Z","event_id":"{EID}"}}"#);
        let index = Encoder::new(
            Target::Daily {
                prefix: "ev".into(),
            },
            OpType::Index,
        );
        assert_eq!(
            encode(&index, &doc).unwrap(),
            format!("{{\"index\":{{\"_index\":\"ev-2024.02.29\",\"_id\":\"{EID}\"}}}}\n{doc}\n")
        );
    }

    #[test]
    fn data_streams_get_create_and_a_timestamp() {
        let stream = Encoder::new(
            Target::DataStream {
                name: "logs-plowline".into(),
            },
            OpType::Index,
        );
        let doc = format!(
            " {{ \"event_id\":\"{EID}\",\n\"collector_tstamp\":\"2023-11-14T22:13:20.123Z\"}}"
        );
        let encoded = encode(&stream, &doc).unwrap();
        let (action, source) = encoded.split_once('\n').unwrap();
        assert_eq!(
            action,
            format!("{{\"create\":{{\"_index\":\"logs-plowline\",\"_id\":\"{EID}\"}}}}")
        );
        assert_eq!(source.matches('\n').count(), 1, "one line: {source:?}");
        let value: serde_json::Value = serde_json::from_str(source).unwrap();
        assert_eq!(value["@timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(value["event_id"], EID);
    }

    #[test]
    fn unreadable_documents_give_every_reason() {
        let cases = [
            ("[1,2]", vec!["not a JSON object"]),
            ("{\"event_id\":", vec!["not valid JSON"]),
            (
                "{}",
                vec!["event_id is missing", "collector_tstamp is missing"],
            ),
            (
                r#"{"event_id":"x","collector_tstamp":"2023-02-29T00:00:00.000Z"}"#,
                vec![
                    "event_id is not a UUID: \"x\"",
                    "collector_tstamp is not an ISO 8601",
                ],
            ),
            (
                &format!(
                    r#"{{"event_id":"{EID}","collector_tstamp":"2023-01-01T00:00:00.000Z","derived_tstamp":17}}"#
                ),
                vec!["derived_tstamp is not an ISO 8601 UTC timestamp: 17"],
            ),
            (
                &format!(
                    r#"{{"event_id":"{EID}","event_id":"{EID}","collector_tstamp":"2023-01-01T00:00:00Z"}}"#
                ),
                vec!["duplicate field `event_id`"],
            ),
            (
                r#"{"event_id":5,"collector_tstamp":null}"#,
                vec!["event_id is not a UUID: 5", "collector_tstamp is missing"],
            ),
        ];
        for (doc, expected) in cases {
            let reasons = encode(&daily(), doc).unwrap_err();
            assert_eq!(reasons.len(), expected.len(), "{doc}: {reasons:?}");
            for (reason, part) in reasons.iter().zip(expected) {
                assert!(reason.contains(part), "{doc}: {reason} lacks {part}");
            }
        }
    }

    #[test]
    fn batches_keep_positions() {
        let good =
            format!(r#"{{"event_id":"{EID}","collector_tstamp":"2023-01-01T00:00:00.000Z"}}"#);
        let docs = [good.as_bytes(), b"nope", good.as_bytes()];
        let batch = daily().encode_batch(docs);
        assert_eq!(
            batch.items.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(batch.unreadable.len(), 1);
        assert_eq!(batch.unreadable[0].0, 1);
        let (_, second) = &batch.items[1];
        assert!(batch.body[second.clone()].starts_with(b"{\"create\""));
        assert_eq!(second.end, batch.body.len());
    }

    #[test]
    fn timestamps_and_uuids() {
        for good in [
            "2023-11-14T22:13:20.123Z",
            "2024-02-29T00:00:00Z",
            "2023-01-01T23:59:59.123456789Z",
        ] {
            assert!(is_timestamp(good), "{good}");
        }
        for bad in [
            "2023-11-14 22:13:20.123Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+01:00",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
        assert!(is_uuid(EID));
        assert!(!is_uuid("c6ef3124-b53a-4b13-a233-0123456789a"));
        assert!(!is_uuid("c6ef3124xb53a-4b13-a233-0123456789ab"));
    }

    #[test]
    fn bad_rows_go_to_the_bad_index_of_their_failure_day_with_their_hash() {
        let row = crate::badrow::BadRow::format_violation(b"x", "nginx", "no", 1_700_000_000_000);
        let mut doc = Vec::new();
        row.write_line(&mut doc);
        doc.pop();
        let encoder = daily().with_bad_prefix("oops");
        let mut out = Vec::new();
        assert_eq!(encoder.encode(&doc, &mut out), Ok(Kind::BadRow));
        let id = bad_rows::row_id(&doc);
        let expected = format!(
            "{{\"create\":{{\"_index\":\"oops-2023.11.14\",\"_id\":\"{id}\"}}}}\n{}\n",
            String::from_utf8_lossy(&doc)
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let batch = encoder.encode_batch([doc.as_slice(), b"nope"]);
        assert_eq!(batch.bad_rows, [0]);
        assert_eq!(batch.unreadable.len(), 1);
    }
}
