//! Enriched events as JSON, the shape Snowplow's Elasticsearch loader and analytics SDKs give
//! them: atomic fields as top-level keys (absent ones left out), booleans `true`/`false`,
//! timestamps ISO 8601 with milliseconds and `Z`, `geo_location` as `"lat,lon"`, entities of
//! `contexts` and `derived_contexts` grouped under `contexts_<vendor>_<name>_<major>` (a list of
//! their `data` objects) and the unstruct event under `unstruct_event_<vendor>_<name>_<major>`.
//!
//! Written straight into a byte buffer: no intermediate `serde_json::Value` per event.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use plowline_collector::tracker::{SchemaKey, SelfDescribing};

use super::DateTimes;
use crate::event::FieldVisitor;
use crate::EnrichedEvent;

/// Appends `event` as one JSON object (no line break) to `out`.
///
/// Every member is written after a comma, and the comma before the first one then becomes the
/// object's `{`: no member has to ask whether it is the first.
pub fn write_json_event(event: &EnrichedEvent, out: &mut Vec<u8>) {
    thread_local! {
        static DATES: RefCell<DateTimes> = RefCell::default();
    }
    let start = out.len();
    DATES.with_borrow_mut(|dates| event.visit(&mut Atomic { out, dates }));
    if let (Some(lat), Some(lon)) = (event.geo_latitude, event.geo_longitude) {
        key(out, "geo_location");
        out.push(b'"');
        write_f64(lat, out);
        out.push(b',');
        write_f64(lon, out);
        out.push(b'"');
    }
    if let Some(unstruct) = &event.unstruct_event {
        out.extend_from_slice(b",\"");
        flat_key("unstruct_event_", &unstruct.schema, out);
        out.extend_from_slice(b"\":");
        out.extend_from_slice(unstruct.data.as_str().as_bytes());
    }
    if !event.contexts.is_empty() || !event.derived_contexts.is_empty() {
        write_contexts(event, out);
    }
    match out.get_mut(start) {
        Some(comma) => *comma = b'{',
        None => out.push(b'{'),
    }
    out.push(b'}');
}

/// Buffers for grouping an event's entities, kept per thread so that an event costs no
/// allocation: the flattened keys, one range of `keys` per group, each entity's group.
#[derive(Default)]
struct Grouping {
    keys: Vec<u8>,
    groups: Vec<std::ops::Range<usize>>,
    group_of: Vec<usize>,
}

/// Appends the entities of `contexts` and `derived_contexts` grouped by flattened key, in order
/// of first appearance: `,"contexts_…":[data,…]` per group.
fn write_contexts(event: &EnrichedEvent, out: &mut Vec<u8>) {
    thread_local! {
        static GROUPING: RefCell<Grouping> = RefCell::default();
    }
    let entities = || event.contexts.iter().chain(&event.derived_contexts);
    GROUPING.with_borrow_mut(|grouping| {
        let Grouping {
            keys,
            groups,
            group_of,
        } = grouping;
        keys.clear();
        groups.clear();
        group_of.clear();
        // Keys are written once into `keys`, and each entity remembers its group.
        for entity in entities() {
            let start = keys.len();
            flat_key("contexts_", &entity.schema, keys);
            let found = groups
                .iter()
                .position(|range| keys[range.clone()] == keys[start..]);
            match found {
                Some(group) => {
                    keys.truncate(start);
                    group_of.push(group);
                }
                None => {
                    group_of.push(groups.len());
                    groups.push(start..keys.len());
                }
            }
        }
        for (group, range) in groups.iter().enumerate() {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(&keys[range.clone()]);
            out.extend_from_slice(b"\":[");
            let members = entities()
                .zip(group_of.iter())
                .filter(|(_, g)| **g == group);
            for (i, (entity, _)) in members.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(entity.data.as_str().as_bytes());
            }
            out.push(b']');
        }
    });
}

/// Appends the flattened key of `schema` after `prefix`: vendor with `.` and `-` as `_`, name
/// in snake_case, both lower-case, then the model: `com.acme/productEntity/…/1-0-2` →
/// `com_acme_product_entity_1`.
pub fn flat_key(prefix: &str, schema: &Arc<SchemaKey>, out: &mut Vec<u8>) {
    /// The flattened names of the last few schemas, per thread: an event's entities, and the
    /// next events', come from a handful of schemas. Entities read from the same schema share
    /// its key, so a key is usually found by its address, before any text is compared.
    type Recent = VecDeque<(Arc<SchemaKey>, Vec<u8>)>;
    const REMEMBERED: usize = 8;
    thread_local! {
        static RECENT: RefCell<Recent> = const { RefCell::new(VecDeque::new()) };
    }
    out.extend_from_slice(prefix.as_bytes());
    RECENT.with_borrow_mut(|recent| {
        let same_flat_key = |known: &SchemaKey| {
            known.model == schema.model
                && known.vendor == schema.vendor
                && known.name == schema.name
        };
        let known = recent
            .iter()
            .find(|(known, _)| Arc::ptr_eq(known, schema))
            .or_else(|| recent.iter().find(|(known, _)| same_flat_key(known)));
        if let Some((_, flat)) = known {
            out.extend_from_slice(flat);
            return;
        }
        let mut flat = Vec::new();
        for b in schema.vendor.bytes() {
            flat.push(match b {
                b'.' | b'-' => b'_',
                b => b.to_ascii_lowercase(),
            });
        }
        flat.push(b'_');
        snake_case(&schema.name, &mut flat);
        flat.push(b'_');
        flat.extend_from_slice(itoa::Buffer::new().format(schema.model).as_bytes());
        out.extend_from_slice(&flat);
        if recent.len() == REMEMBERED {
            recent.pop_back();
        }
        recent.push_front((Arc::clone(schema), flat));
    });
}

/// camelCase to snake_case the way Snowplow's analytics SDKs do it: `_` between a lower-case
/// letter or digit and an upper-case letter, and before the last capital of a run followed by a
/// lower-case letter (`HTMLPage` → `html_page`); `-` becomes `_`; all lower-case.
fn snake_case(name: &str, out: &mut Vec<u8>) {
    let bytes = name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_uppercase() && i > 0 {
            let prev = bytes[i - 1];
            let next_lower = bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase);
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push(b'_');
            }
        }
        out.push(if b == b'-' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        });
    }
}

/// Writes the atomic fields; contexts and the unstruct event are flattened afterwards.
struct Atomic<'o> {
    out: &'o mut Vec<u8>,
    dates: &'o mut DateTimes,
}

/// Appends `,"name":` (the first member's comma becomes the `{`, see [`write_json_event`]).
#[inline(always)]
fn key(out: &mut Vec<u8>, name: &str) {
    member_start(out, name, b"\":");
}

/// Appends `,"name":"`, the start of a member whose value is a string.
#[inline(always)]
fn key_and_quote(out: &mut Vec<u8>, name: &str) {
    member_start(out, name, b"\":\"");
}

/// Appends `,"` then `name` then `end`, assembled in a small buffer and appended at once.
///
/// Always inlined, like the visitor methods that call it: `EnrichedEvent::visit` passes each
/// name as a constant, so the buffer's contents and length are constants, and the whole is a
/// few moves and one check of the output's capacity, where three appends would check it
/// three times. A name too long for the buffer (none is) is appended piece by piece.
#[inline(always)]
fn member_start(out: &mut Vec<u8>, name: &str, end: &[u8]) {
    const ROOM: usize = 32;
    let len = 2 + name.len() + end.len();
    if len > ROOM {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(end);
        return;
    }
    let mut buf = [0u8; ROOM];
    buf[..2].copy_from_slice(b",\"");
    buf[2..2 + name.len()].copy_from_slice(name.as_bytes());
    buf[2 + name.len()..len].copy_from_slice(end);
    out.extend_from_slice(&buf[..len]);
}

impl FieldVisitor for Atomic<'_> {
    #[inline(always)]
    fn text(&mut self, name: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            key_and_quote(self.out, name);
            write_str_after_quote(value, self.out);
        }
    }

    #[inline(always)]
    fn int(&mut self, name: &'static str, value: Option<i32>) {
        if let Some(value) = value {
            key(self.out, name);
            write_int(value, self.out);
        }
    }

    #[inline(always)]
    fn decimal(&mut self, name: &'static str, value: Option<f64>) {
        if let Some(value) = value {
            key(self.out, name);
            if value.is_finite() {
                write_f64(value, self.out);
            } else {
                self.out.extend_from_slice(b"null");
            }
        }
    }

    #[inline(always)]
    fn boolean(&mut self, name: &'static str, value: Option<bool>) {
        // The value goes in the buffer with the member's start: one constant append either way.
        match value {
            Some(true) => member_start(self.out, name, b"\":true"),
            Some(false) => member_start(self.out, name, b"\":false"),
            None => {}
        }
    }

    #[inline(always)]
    fn tstamp(&mut self, name: &'static str, value: Option<i64>) {
        if let Some(value) = value {
            key_and_quote(self.out, name);
            self.dates.write(value, b'T', self.out);
            self.out.extend_from_slice(b"Z\"");
        }
    }

    fn contexts(&mut self, _: &'static str, _: &[SelfDescribing]) {}

    fn unstruct(&mut self, _: &'static str, _: Option<&SelfDescribing>) {}
}

/// Appends `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn write_iso8601(ms: i64, out: &mut Vec<u8>) {
    super::write_datetime(ms, b'T', out);
    out.push(b'Z');
}

/// Appends `value` in decimal, as `itoa` writes it. One from 0 to 9999 (most: sizes, ports,
/// counts) is written from its four digits without a branch: they are shifted to the start of
/// a word, which is appended whole, and the output cut back to the number's end (an append of
/// a constant size, where the number's own length would make it a call).
#[inline(always)]
fn write_int(value: i32, out: &mut Vec<u8>) {
    match u16::try_from(value) {
        Ok(n) if n < 10_000 => {
            let len = 1 + usize::from(n >= 10) + usize::from(n >= 100) + usize::from(n >= 1000);
            let digits = [n / 1000, n / 100 % 10, n / 10 % 10, n % 10].map(|d| b'0' + d as u8);
            let word = u32::from_le_bytes(digits) >> (8 * (4 - len));
            let end = out.len() + len;
            out.extend_from_slice(&word.to_le_bytes());
            out.truncate(end);
        }
        _ => out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()),
    }
}

/// Appends a finite `f64` in its shortest round-trip form, integers without a fraction.
pub(crate) fn write_f64(value: f64, out: &mut Vec<u8>) {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format(value).as_bytes());
    }
}

/// Appends `document` as `{"schema":"iglu:…","data":…}`, as serde would write it.
pub fn write_self_describing(document: &SelfDescribing, out: &mut Vec<u8>) {
    // A schema key's characters need no escaping in a JSON string.
    out.extend_from_slice(b"{\"schema\":\"");
    let schema = &document.schema;
    for (prefix, part) in [
        ("iglu:", &schema.vendor),
        ("/", &schema.name),
        ("/", &schema.format),
    ] {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    for (prefix, number) in [
        ("/", schema.model),
        ("-", schema.revision),
        ("-", schema.addition),
    ] {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
    }
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(document.data.as_str().as_bytes());
    out.push(b'}');
}

/// The width of the windows in which texts are checked for characters to escape.
const WINDOW: usize = 16;

/// Whether a window holds no `"`, `\` or control character: a check of a fixed-size window,
/// without branches, which the compiler turns into a few vector instructions (without the
/// set-up of a loop over a length known only at run time: an event's values are short).
#[inline(always)]
fn clean(window: &[u8; WINDOW]) -> bool {
    window.iter().fold(true, |clean, &b| {
        clean & (b >= 0x20) & (b != b'"') & (b != b'\\')
    })
}

/// Whether `bytes`, at least a window long, holds no `"`, `\` or control character, a window
/// at a time. The last window ends at the last byte, overlapping the one before.
fn long_needs_no_escape(bytes: &[u8]) -> bool {
    let last = bytes.len().saturating_sub(WINDOW);
    let mut all_clean = true;
    for window in bytes.chunks_exact(WINDOW).chain([&bytes[last..]]) {
        if let Ok(window) = <&[u8; WINDOW]>::try_from(window) {
            all_clean &= clean(window);
        }
    }
    all_clean
}

/// Appends `text` as a JSON string, quotes included.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    write_str_after_quote(text, out);
}

/// Appends `text` as the rest of a JSON string whose opening quote is written: its characters,
/// escaped, then the closing quote.
///
/// Always inlined into the writer of each text field, which writes the opening quote with the
/// field's name: an event has dozens of short texts, and the call of a function that does so
/// little cost more than its work. Texts that need escaping take [`write_escaped`].
#[inline(always)]
fn write_str_after_quote(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    if bytes.len() < WINDOW {
        // A short text is checked in a copy padded with spaces, which then gets the closing
        // quote after the text; that whole window is appended, then the padding cut off: a copy
        // of fixed size, a few moves, where the text's own length would make it a call.
        let mut padded = [b' '; WINDOW];
        padded[..bytes.len()].copy_from_slice(bytes);
        if clean(&padded) {
            padded[bytes.len()] = b'"';
            let end = out.len() + bytes.len() + 1;
            out.extend_from_slice(&padded);
            out.truncate(end);
            return;
        }
    } else if let Some(windows) = three_windows(bytes) {
        // A text of up to three windows is checked in its first, middle and last window (which
        // overlap when it is shorter), and appended as the same windows: the first two, then
        // the output cut back to where the last one starts. Copies of fixed size, a few moves,
        // where the text's own length would make it a call.
        let [first, middle, last] = windows;
        if clean(first) & clean(middle) & clean(last) {
            let last_at = out.len() + bytes.len() - WINDOW;
            out.extend_from_slice(first);
            out.extend_from_slice(middle);
            out.truncate(last_at);
            out.extend_from_slice(last);
            out.push(b'"');
            return;
        }
    } else if long_needs_no_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    write_escaped(bytes, out);
}

/// The first window of `bytes`, the second (or the last when there are only two), and the
/// last: together all of a text from one to three windows long. `None` for any other length.
#[inline(always)]
fn three_windows(bytes: &[u8]) -> Option<[&[u8; WINDOW]; 3]> {
    let window = |at: usize| <&[u8; WINDOW]>::try_from(bytes.get(at..at + WINDOW)?).ok();
    let last = bytes.len().checked_sub(WINDOW)?;
    if last > 2 * WINDOW {
        return None;
    }
    Some([window(0)?, window(last.min(WINDOW))?, window(last)?])
}

/// Appends `bytes` with JSON's escapes, then the closing quote.
#[inline(never)]
fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sd(uri: &str, data: Value) -> SelfDescribing {
        SelfDescribing {
            schema: SchemaKey::parse(uri).unwrap().into(),
            data: data.into(),
        }
    }

    fn to_value(event: &EnrichedEvent) -> Value {
        let mut out = Vec::new();
        write_json_event(event, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn absent_fields_are_left_out_and_types_kept() {
        let event = EnrichedEvent {
            app_id: Some("shop \"A\"\t\u{1}".into()),
            collector_tstamp: 1_700_000_000_123,
            br_cookies: Some(false),
            se_value: Some(2.5),
            tr_total: Some(10.0),
            pp_xoffset_min: Some(-3),
            ..EnrichedEvent::default()
        };
        assert_eq!(
            to_value(&event),
            json!({
                "app_id": "shop \"A\"\t\u{1}",
                "collector_tstamp": "2023-11-14T22:13:20.123Z",
                "br_cookies": false,
                "se_value": 2.5,
                "tr_total": 10,
                "pp_xoffset_min": -3,
            })
        );
    }

    #[test]
    fn contexts_and_derived_contexts_are_flattened_together() {
        let event = EnrichedEvent {
            geo_latitude: Some(51.5),
            geo_longitude: Some(-0.25),
            contexts: vec![
                sd(
                    "iglu:com.acme/productEntity/jsonschema/1-0-2",
                    json!({"sku": "a"}),
                ),
                sd(
                    "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                    json!({"id": "x"}),
                ),
                sd(
                    "iglu:com.acme/productEntity/jsonschema/1-1-0",
                    json!({"sku": "b"}),
                ),
            ],
            derived_contexts: vec![sd(
                "iglu:com.acme/productEntity/jsonschema/1-0-0",
                json!({"sku": "c"}),
            )],
            unstruct_event: Some(sd(
                "iglu:com.my-co.web/HTMLButtonClick/jsonschema/2-0-0",
                json!({"id": 1}),
            )),
            ..EnrichedEvent::default()
        };
        let value = to_value(&event);
        assert_eq!(value["geo_location"], "51.5,-0.25");
        assert_eq!(
            value["contexts_com_acme_product_entity_1"],
            json!([{"sku": "a"}, {"sku": "b"}, {"sku": "c"}])
        );
        assert_eq!(
            value["contexts_com_snowplowanalytics_snowplow_web_page_1"],
            json!([{"id": "x"}])
        );
        assert_eq!(
            value["unstruct_event_com_my_co_web_html_button_click_2"],
            json!({"id": 1})
        );
        assert!(value.get("contexts").is_none());
    }

    #[test]
    fn snake_case_follows_the_sdks() {
        let snake = |name: &str| {
            let mut out = Vec::new();
            snake_case(name, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(snake("productEntity"), "product_entity");
        assert_eq!(snake("web_page"), "web_page");
        assert_eq!(snake("HTMLPage"), "html_page");
        assert_eq!(snake("page2View"), "page2_view");
        assert_eq!(snake("link-click"), "link_click");
    }

    #[test]
    fn integers_are_written_as_itoa_writes_them() {
        let values = (-1100..=11_000).chain([i32::MIN, -65_536, 65_535, 65_536, i32::MAX]);
        for value in values {
            let mut out = b"x".to_vec();
            write_int(value, &mut out);
            assert_eq!(out, format!("x{value}").into_bytes());
        }
    }

    #[test]
    fn an_escape_is_found_in_every_window() {
        // Written after other output, as in an event: the short path cuts its padding off.
        let written = |text: &str| {
            let mut out = b"x".to_vec();
            write_str(text, &mut out);
            String::from_utf8(out).unwrap()
        };
        for len in 0..=56 {
            let clean = "a".repeat(len);
            assert_eq!(written(&clean), format!("x{}", json!(clean)), "{len}");
            for at in 0..len {
                for dirty in ["\"", "\\", "\n", "\u{1f}"] {
                    let mut text = clean.clone();
                    text.replace_range(at..=at, dirty);
                    assert_eq!(
                        written(&text),
                        format!("x{}", json!(text)),
                        "{len} {at} {dirty}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            text in proptest::collection::vec(
                proptest::sample::select(vec!['a', ' ', '"', '\\', '\n', '\u{1}', '\u{7f}', 'é']),
                0..40,
            )
        ) {
            let text: String = text.into_iter().collect();
            let mut out = Vec::new();
            write_str(&text, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), json!(text).to_string());
        }
    }
}
