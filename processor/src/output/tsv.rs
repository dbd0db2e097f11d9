//! Enriched events as Snowplow's canonical TSV: the 131 fields in order, empty for absent,
//! timestamps `YYYY-MM-DD HH:MM:SS.mmm` (UTC), booleans `1`/`0`, contexts, derived contexts and
//! the unstruct event as self-describing JSON in their envelopes. Tabs, line breaks and other
//! control characters in text become spaces, so a value can never split a column or a row.

use std::cell::RefCell;

use plowline_collector::tracker::SelfDescribing;

use super::json::{write_f64, write_self_describing};
use super::DateTimes;
use crate::event::FieldVisitor;
use crate::EnrichedEvent;

/// The envelope of `contexts` and `derived_contexts`.
pub const CONTEXTS_SCHEMA: &str = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0";
/// The envelope of `unstruct_event`.
pub const UNSTRUCT_SCHEMA: &str =
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0";

/// Appends `event` as one TSV row (no line break) to `out`.
pub fn write_tsv_event(event: &EnrichedEvent, out: &mut Vec<u8>) {
    thread_local! {
        static DATES: RefCell<DateTimes> = RefCell::default();
    }
    DATES.with_borrow_mut(|dates| {
        event.visit(&mut Row {
            out,
            first: true,
            dates,
        })
    });
}

struct Row<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
    dates: &'o mut DateTimes,
}

impl Row<'_> {
    fn sep(&mut self) {
        if !self.first {
            self.out.push(b'\t');
        }
        self.first = false;
    }

    /// Writes `{"schema":<envelope>,"data":<documents>}`: an array of them for contexts, the
    /// one document for the unstruct event.
    fn envelope(&mut self, schema: &str, documents: &[SelfDescribing], array: bool) {
        let start = self.out.len();
        self.out.extend_from_slice(b"{\"schema\":\"");
        self.out.extend_from_slice(schema.as_bytes());
        self.out.extend_from_slice(b"\",\"data\":");
        if array {
            self.out.push(b'[');
        }
        for (i, document) in documents.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_self_describing(document, self.out);
        }
        if array {
            self.out.push(b']');
        }
        self.out.push(b'}');
        clean(&mut self.out[start..]);
    }
}

/// Replaces control characters (serde_json escapes them inside strings; this is the last
/// guard) with spaces.
fn clean(bytes: &mut [u8]) {
    for b in bytes {
        if *b < 0x20 || *b == 0x7f {
            *b = b' ';
        }
    }
}

impl FieldVisitor for Row<'_> {
    fn text(&mut self, _: &'static str, value: Option<&str>) {
        self.sep();
        if let Some(value) = value {
            let start = self.out.len();
            self.out.extend_from_slice(value.as_bytes());
            clean(&mut self.out[start..]);
        }
    }

    fn int(&mut self, _: &'static str, value: Option<i32>) {
        self.sep();
        if let Some(value) = value {
            self.out
                .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn decimal(&mut self, _: &'static str, value: Option<f64>) {
        self.sep();
        if let Some(value) = value.filter(|v| v.is_finite()) {
            write_f64(value, self.out);
        }
    }

    fn boolean(&mut self, _: &'static str, value: Option<bool>) {
        self.sep();
        if let Some(value) = value {
            self.out.push(if value { b'1' } else { b'0' });
        }
    }

    fn tstamp(&mut self, _: &'static str, value: Option<i64>) {
        self.sep();
        if let Some(value) = value {
            self.dates.write(value, b' ', self.out);
        }
    }

    fn contexts(&mut self, _: &'static str, value: &[SelfDescribing]) {
        self.sep();
        if !value.is_empty() {
            self.envelope(CONTEXTS_SCHEMA, value, true);
        }
    }

    fn unstruct(&mut self, _: &'static str, value: Option<&SelfDescribing>) {
        self.sep();
        if let Some(value) = value {
            self.envelope(UNSTRUCT_SCHEMA, std::slice::from_ref(value), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plowline_collector::tracker::SchemaKey;

    #[test]
    fn a_row_has_131_columns_cleaned_and_typed() {
        let event = EnrichedEvent {
            app_id: Some("a\tb\nc".into()),
            collector_tstamp: 1_700_000_000_123,
            br_cookies: Some(true),
            dvce_ismobile: Some(false),
            contexts: vec![SelfDescribing {
                schema: SchemaKey::parse("iglu:com.acme/x/jsonschema/1-0-0")
                    .unwrap()
                    .into(),
                data: serde_json::json!({"t": "x\ty"}).into(),
            }],
            ..EnrichedEvent::default()
        };
        let mut out = Vec::new();
        write_tsv_event(&event, &mut out);
        let row = String::from_utf8(out).unwrap();
        let columns: Vec<&str> = row.split('\t').collect();
        assert_eq!(columns.len(), 131);
        let column = |name: &str| {
            columns[crate::event::FIELD_NAMES
                .iter()
                .position(|n| *n == name)
                .unwrap()]
        };
        assert_eq!(column("app_id"), "a b c");
        assert_eq!(column("collector_tstamp"), "2023-11-14 22:13:20.123");
        assert_eq!(column("br_cookies"), "1");
        assert_eq!(column("dvce_ismobile"), "0");
        assert_eq!(
            column("contexts"),
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":{"t":"x\ty"}}]}"#
        );
    }
}
