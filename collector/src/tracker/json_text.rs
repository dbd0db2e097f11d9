//! JSON kept as text: the `data` of self-describing documents, validated once and written out
//! by copying bytes.
//!
//! [`JsonText`] holds a JSON value in *canonical form*: exactly the text `serde_json` writes for
//! the equivalent [`serde_json::Value`] (no whitespace, object keys sorted and unique, numbers and
//! string escapes as `serde_json` writes them). Output that used to re-serialize a `Value` can
//! copy the text instead and stay byte-identical.
//!
//! [`Canonicalizer`] turns JSON text into that form in one pass without building a `Value`. It
//! handles what trackers send (whitespace, unsorted keys, `\uXXXX` escapes, decimals); anything
//! unusual (duplicate or escaped keys, deep nesting, invalid JSON) makes it give up, and the
//! caller falls back to `serde_json`, which then also produces the error messages.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::swar;

/// A JSON value as compact text, exactly as `serde_json` serializes the equivalent
/// [`Value`]: two `JsonText`s are equal when their values are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonText(String);

impl JsonText {
    /// The canonical text of `value`.
    pub fn from_value(value: &Value) -> JsonText {
        JsonText(value.to_string())
    }

    /// The text, to be copied into JSON output as it is.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, parsed again (for tests and rare paths; output should copy [`as_str`]).
    ///
    /// [`as_str`]: JsonText::as_str
    pub fn to_value(&self) -> Value {
        // The text was written from a `Value` or checked by the canonicalizer: it parses.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl JsonText {
    /// Text already in canonical form (written by a reader of this module's rules).
    pub(crate) fn from_canonical(text: String) -> JsonText {
        JsonText(text)
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        JsonText::from_value(&value)
    }
}

impl fmt::Display for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<Value> for JsonText {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(JsonText::from)
    }
}

/// Nesting beyond which the canonicalizer gives up (`serde_json` itself stops at 128).
pub(crate) const MAX_DEPTH: usize = 100;

/// A one-pass reader of JSON text that writes values in canonical form.
///
/// Every method returns `None` to mean "not handled here": the text may be invalid or merely
/// unusual, and the caller must fall back to `serde_json`.
pub(crate) struct Canonicalizer<'t> {
    text: &'t str,
    pos: usize,
    /// Object members written so far, innermost object last: `(start, key_end, end)` offsets in
    /// the output of `"key"` and of the whole `"key":value`.
    members: Vec<(usize, usize, usize)>,
}

impl<'t> Canonicalizer<'t> {
    /// A reader at the start of `text`.
    pub(crate) fn new(text: &'t str) -> Self {
        Canonicalizer {
            text,
            pos: 0,
            members: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace, then returns the next byte without consuming it.
    pub(crate) fn peek_token(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
        self.peek()
    }

    /// Consumes `byte` (after whitespace).
    pub(crate) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek_token()? == byte).then(|| self.pos += 1)
    }

    /// Consumes `literal` (after whitespace) if the text goes on with it.
    pub(crate) fn skip(&mut self, literal: &str) -> bool {
        self.peek_token();
        let found = self.text[self.pos..].starts_with(literal);
        if found {
            self.pos += literal.len();
        }
        found
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek_token().is_none()
    }

    /// Reads a string without escapes (after whitespace) and returns its contents.
    pub(crate) fn plain_string(&mut self) -> Option<&'t str> {
        self.expect(b'"')?;
        let start = self.pos;
        let len = self.string_run()?;
        self.pos = start + len;
        self.expect(b'"')?;
        Some(&self.text[start..start + len])
    }

    /// Reads a string (after whitespace) and returns its value with escapes decoded, borrowed
    /// from the text when it has none.
    pub(crate) fn string_value(&mut self) -> Option<Cow<'t, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        self.pos += self.string_run()?;
        if self.peek()? == b'"' {
            self.pos += 1;
            return Some(Cow::Borrowed(&self.text[start..self.pos - 1]));
        }
        let mut value = String::with_capacity(64);
        value.push_str(&self.text[start..self.pos]);
        loop {
            value.push(self.escape()?);
            let run = self.pos;
            self.pos += self.string_run()?;
            value.push_str(&self.text[run..self.pos]);
            if self.peek()? == b'"' {
                self.pos += 1;
                return Some(Cow::Owned(value));
            }
        }
    }

    /// The length of the run of plain string characters at `pos`, up to a `"` or `\`; `None`
    /// when the text ends first or a control character (invalid in a JSON string) comes first.
    fn string_run(&self) -> Option<usize> {
        let rest = &self.text.as_bytes()[self.pos..];
        let len = string_stop(rest)?;
        (rest[len] >= 0x20).then_some(len)
    }

    /// Reads one value (after whitespace) into its canonical text.
    pub(crate) fn json_text(&mut self) -> Option<JsonText> {
        // Room for a typical entity, so that small ones are written without growing.
        let mut out = String::with_capacity(128);
        self.value(&mut out, 0)?;
        Some(JsonText(out))
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek_token()? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => self.string(out),
            b't' => self.literal("true", out),
            b'f' => self.literal("false", out),
            b'n' => self.literal("null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, out: &mut String) -> Option<()> {
        self.text[self.pos..].starts_with(word).then(|| {
            self.pos += word.len();
            out.push_str(word);
        })
    }

    fn array(&mut self, out: &mut String, depth: usize) -> Option<()> {
        self.pos += 1;
        out.push('[');
        if self.peek_token()? == b']' {
            self.pos += 1;
            out.push(']');
            return Some(());
        }
        loop {
            self.value(out, depth + 1)?;
            match self.peek_token()? {
                b',' => out.push(','),
                b']' => break,
                _ => return None,
            }
            self.pos += 1;
        }
        self.pos += 1;
        out.push(']');
        Some(())
    }

    /// An object, members sorted by key as `serde_json`'s `BTreeMap` orders them. Keys with
    /// escapes and duplicate keys are left to `serde_json`.
    fn object(&mut self, out: &mut String, depth: usize) -> Option<()> {
        self.pos += 1;
        out.push('{');
        if self.peek_token()? == b'}' {
            self.pos += 1;
            out.push('}');
            return Some(());
        }
        let first_member = self.members.len();
        let body = out.len();
        loop {
            let start = out.len();
            let key = self.plain_string()?;
            out.push('"');
            out.push_str(key);
            out.push('"');
            let key_end = out.len();
            self.expect(b':')?;
            out.push(':');
            self.value(out, depth + 1)?;
            self.members.push((start, key_end, out.len()));
            match self.peek_token()? {
                b',' => out.push(','),
                b'}' => break,
                _ => return None,
            }
            self.pos += 1;
        }
        self.pos += 1;
        let members = &mut self.members[first_member..];
        if key_order(members, out.as_bytes())? {
            let written = out[body..].to_owned();
            out.truncate(body);
            for (i, &(start, _, end)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&written[start - body..end - body]);
            }
        }
        self.members.truncate(first_member);
        out.push('}');
        Some(())
    }

    /// A string, escapes rewritten the way `serde_json` writes them.
    fn string(&mut self, out: &mut String) -> Option<()> {
        let bytes = self.text.as_bytes();
        self.pos += 1;
        out.push('"');
        loop {
            let start = self.pos;
            self.pos += self.string_run()?;
            out.push_str(&self.text[start..self.pos]);
            if bytes[self.pos] == b'"' {
                break;
            }
            let c = self.escape()?;
            out.push_str(char_text(c, &mut [0; 6]));
        }
        self.pos += 1;
        out.push('"');
        Some(())
    }

    /// The character of the escape at `pos` (a `\`), surrogate pairs joined.
    fn escape(&mut self) -> Option<char> {
        self.pos += 1;
        read_escape(self)
    }

    /// A number, written by [`canonical_number`].
    fn number(&mut self, out: &mut String) -> Option<()> {
        let rest = &self.text.as_bytes()[self.pos..];
        let len = rest.iter().take_while(|&&b| is_number_byte(b)).count();
        let literal = &self.text[self.pos..self.pos + len];
        self.pos += len;
        out.push_str(&canonical_number(literal)?);
        Some(())
    }
}

/// An object's members, `(start, key_end, end)` offsets in `out` of `"key"` and of
/// `"key":value`, put in key order: `Some(true)` when they were not in it (the caller writes them
/// again), `None` for a duplicate key (which the readers leave to `serde_json`).
pub(crate) fn key_order(members: &mut [(usize, usize, usize)], out: &[u8]) -> Option<bool> {
    let key = |(start, key_end, _): (usize, usize, usize)| &out[start + 1..key_end - 1];
    if members.windows(2).all(|pair| key(pair[0]) < key(pair[1])) {
        return Some(false);
    }
    members.sort_by(|&a, &b| key(a).cmp(key(b)));
    if members.windows(2).any(|pair| key(pair[0]) == key(pair[1])) {
        return None;
    }
    Some(true)
}

/// The byte source of the one-pass JSON readers: the text itself ([`Canonicalizer`]) or its
/// form-encoded form (`form_json`).
pub(crate) trait JsonBytes {
    /// Consumes and returns the next byte of the JSON text.
    fn next_byte(&mut self) -> Option<u8>;
}

impl JsonBytes for Canonicalizer<'_> {
    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.text.as_bytes().get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
}

/// The character of a string escape whose `\` was just consumed, surrogate pairs joined; `None`
/// for an invalid one.
pub(crate) fn read_escape(reader: &mut impl JsonBytes) -> Option<char> {
    let c = match reader.next_byte()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(reader)?;
            if (0xD800..0xDC00).contains(&unit) {
                if (reader.next_byte()?, reader.next_byte()?) != (b'\\', b'u') {
                    return None;
                }
                let low = hex4(reader)?;
                if !(0xDC00..0xE000).contains(&low) {
                    return None;
                }
                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
            } else {
                char::from_u32(unit)?
            }
        }
        _ => return None,
    };
    Some(c)
}

fn hex4(reader: &mut impl JsonBytes) -> Option<u32> {
    (0..4).try_fold(0, |unit, _| {
        Some(unit << 4 | u32::from(crate::hex::digit(reader.next_byte()?)?))
    })
}

/// Whether `b` may be part of a JSON number (`-0123456789+.eE`). A number is the longest run of
/// these: any of them right after a complete number would be invalid JSON anyway.
pub(crate) fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// The canonical text of the JSON number `literal`, `None` when it is not exactly one. Integers
/// that fit 18 digits, and short decimals without trailing zeros or exponent, are already
/// canonical; anything else (exponents, long fractions, huge integers, `-0`) is read and written
/// by `serde_json` itself.
pub(crate) fn canonical_number(literal: &str) -> Option<Cow<'_, str>> {
    let bytes = literal.as_bytes();
    let digits = |pos: usize| {
        bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut pos = usize::from(bytes.first() == Some(&b'-'));
    let integer = digits(pos);
    if integer == 0 || (integer > 1 && bytes[pos] == b'0') {
        return None;
    }
    pos += integer;
    let mut plain = true;
    let mut fraction = 0;
    if bytes.get(pos) == Some(&b'.') {
        fraction = digits(pos + 1);
        if fraction == 0 {
            return None;
        }
        pos += 1 + fraction;
        plain = false;
    }
    let fraction_end = pos;
    if let Some(b'e' | b'E') = bytes.get(pos) {
        pos += 1;
        if let Some(b'+' | b'-') = bytes.get(pos) {
            pos += 1;
        }
        let exponent = digits(pos);
        if exponent == 0 {
            return None;
        }
        pos += exponent;
        plain = false;
    }
    if pos != bytes.len() {
        return None;
    }
    let exponent = pos != fraction_end;
    let short_decimal = || {
        let fraction_digits = &bytes[fraction_end - fraction..fraction_end];
        let leading_zeros = fraction_digits.iter().take_while(|&&b| b == b'0').count();
        let integer_is_zero = integer == 1 && bytes[fraction_end - fraction - 2] == b'0';
        integer + fraction <= 15
            && fraction_digits.last() != Some(&b'0')
            && (!integer_is_zero || leading_zeros <= 4)
    };
    if plain && integer <= 18 && literal != "-0" {
        Some(Cow::Borrowed(literal))
    } else if !exponent && fraction > 0 && short_decimal() {
        // A decimal of at most 15 significant digits, the last one not a zero, reads as the
        // double nearest to it, whose shortest form is those same digits; `serde_json` writes
        // them as they are unless the point is more than four zeros before the first digit
        // (then in scientific notation). So it is already canonical.
        Some(Cow::Borrowed(literal))
    } else {
        let number: serde_json::Number = serde_json::from_str(literal).ok()?;
        Some(Cow::Owned(number.to_string()))
    }
}

/// The index of the first byte of `bytes` that ends a run of plain JSON string characters: `"`,
/// `\` or a control character (below 0x20). Eight bytes at a time: the runs are mostly short
/// (keys, ids, the text between escapes), where a search call's fixed cost dominates.
pub(crate) fn string_stop(bytes: &[u8]) -> Option<usize> {
    swar::position(
        bytes,
        |word| swar::equal(word, b'"') | swar::equal(word, b'\\') | swar::below(word, 0x20),
        |b| matches!(b, b'"' | b'\\' | 0..=0x1f),
    )
}

/// `c` as `serde_json` writes it inside a string, `buf` holding the text when it is not a
/// constant.
pub(crate) fn char_text(c: char, buf: &mut [u8; 6]) -> &str {
    match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\u{8}' => "\\b",
        '\u{c}' => "\\f",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\0'..='\u{1f}' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            *buf = *b"\\u0000";
            buf[4] = HEX[usize::from(c as u8 >> 4)];
            buf[5] = HEX[usize::from(c as u8 & 0xf)];
            std::str::from_utf8(buf).unwrap_or_default()
        }
        c => c.encode_utf8(buf),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The canonicalizer's text, or `None` when it gives up.
    fn canonical(text: &str) -> Option<String> {
        let mut reader = Canonicalizer::new(text);
        let json = reader.json_text()?;
        reader.at_end().then_some(json.0)
    }

    /// What `serde_json` writes for `text`, or `None` when it is not JSON.
    fn reference(text: &str) -> Option<String> {
        serde_json::from_str::<Value>(text)
            .ok()
            .map(|v| v.to_string())
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let cases = [
            r#"{"sku": "BOOT-42", "name": "Zo\u00eb \"Z\" boots\t\u6771\u4eac", "price": 99.5}"#,
            r#" { "b" : [ 1 , 2.50 , -0 , 1e3 , 12345678901234567890 , -7 ] , "a" : { } } "#,
            r#"{"z":{"y":[true,false,null],"x":"\ud83d\ude80 \/ \b\f\n\r\t \u0001 \u007f"},"a":""}"#,
            r#"["\u00e9", 0, 0.0, -1.5E-7, 1E+2, 100]"#,
            r#""plain""#,
            r#"{"k":"a","kk":"b","k2":"c","K":"d","é":"e"}"#,
        ];
        for text in cases {
            assert_eq!(canonical(text), reference(text), "{text}");
        }
    }

    #[test]
    fn gives_up_on_what_serde_json_must_judge() {
        let cases = [
            r#"{"a":1,"a":2}"#,
            r#"{"a\"b":1}"#,
            r#"{"a":1,}"#,
            r#"[1 2]"#,
            r#""\ud800""#,
            r#""\x""#,
            "\"tab\tinside\"",
            r#"01"#,
            r#"1."#,
            r#"1e999"#,
            r#"tru"#,
        ];
        for text in cases {
            assert_eq!(canonical(text), None, "{text}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(canonical(&deep), None);
    }

    /// JSON values for the readers' property tests: strings and object keys from the given
    /// regex patterns.
    pub(crate) fn json_values(
        strings: &'static str,
        keys: &'static str,
    ) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e20f64..1e20).prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            strings.prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_values("[a-c\u{0}-\u{1f}\"\\\\/é🚀]{0,6}", "[a-dK_é]{0,3}")
    }

    /// Re-writes serde_json's compact text with whitespace, `\uXXXX` for every non-ASCII or
    /// escaped character, and object members in reverse order.
    fn disguise(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" ,\n");
                    }
                    disguise(item, out);
                }
                out.push_str(" ]");
            }
            Value::Object(map) => {
                out.push_str("{\t");
                for (i, (key, item)) in map.iter().rev().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::from(key.as_str()).to_string());
                    out.push_str(" : ");
                    disguise(item, out);
                }
                out.push_str("\r}");
            }
            Value::String(text) => {
                out.push('"');
                for unit in text.encode_utf16() {
                    match unit {
                        0x20..=0x7e if unit != 0x22 && unit != 0x5c => {
                            out.push(char::from(unit as u8))
                        }
                        _ => out.push_str(&format!("\\u{unit:04X}")),
                    }
                }
                out.push('"');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    proptest! {
        #[test]
        fn sparse_decimals_are_written_as_serde_json_writes_them(
            literal in "-?0\\.0{0,8}[1-9]{1,3}0?|-?[1-9]{1,9}\\.[0-9]{0,7}[1-9]",
        ) {
            let number: serde_json::Number = serde_json::from_str(&literal).unwrap();
            let canonical = canonical_number(&literal).map(Cow::into_owned);
            prop_assert_eq!(canonical, Some(number.to_string()));
        }

        #[test]
        fn decimals_are_written_as_serde_json_writes_them(
            literal in "-?(0|[1-9][0-9]{0,9})\\.[0-9]{1,12}([eE][+-]?[0-9]{1,2})?",
        ) {
            let number: serde_json::Number = serde_json::from_str(&literal).unwrap();
            let canonical = canonical_number(&literal).map(Cow::into_owned);
            prop_assert_eq!(canonical, Some(number.to_string()));
        }

        #[test]
        fn string_stop_finds_the_first_quote_backslash_or_control(
            plain in "[a-zA-Z0-9 #~\u{7f}é東]{0,40}",
            tail in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff],
                0..20,
            ),
        ) {
            let bytes = [plain.as_bytes(), &tail].concat();
            let want = bytes.iter().position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1f));
            prop_assert_eq!(string_stop(&bytes), want);
        }

        #[test]
        fn agrees_with_serde_json(value in json_value()) {
            let compact = value.to_string();
            prop_assert_eq!(canonical(&compact), reference(&compact));
            let mut disguised = String::new();
            disguise(&value, &mut disguised);
            prop_assert_eq!(canonical(&disguised), reference(&disguised));
        }

        #[test]
        fn never_claims_what_serde_json_rejects(text in "[\\[\\]{}\",:0-9.eE+\\-a-z\\\\ ]{0,24}") {
            if let Some(written) = canonical(&text) {
                prop_assert_eq!(Some(written), reference(&text));
            }
        }
    }
}
