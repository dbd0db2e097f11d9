//! The JSON payloads of a query string (`co`, `ue_pr`) read straight from their form-encoded
//! text, percent-decoding and canonicalization in one pass.
//!
//! A percent-encoded `co` is mostly escapes (every quote, colon and brace is `%XX`): decoding it
//! into a string and then reading that string as JSON handles each byte twice. [`FormJson`]
//! reads the encoded text itself, byte for byte as the [`Canonicalizer`] reads the decoded
//! text, and writes the same canonical `data`. Like the canonicalizer it gives up (`None`) on
//! anything unusual, invalid or not UTF-8; the caller then decodes the parameter and takes the
//! usual path, which also explains the errors. What it accepts is valid UTF-8 once decoded.
//!
//! [`Canonicalizer`]: super::json_text::Canonicalizer

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use super::iglu::{
    entity_list, recent_schema_key, EntityReader, SchemaKey, SelfDescribing, SNOWPLOW,
};
use super::json_text::{
    canonical_number, char_text, is_number_byte, key_order, read_escape, JsonBytes, JsonText,
    MAX_DEPTH,
};
use crate::swar;

/// [`parse_unstruct_event`](super::iglu::parse_unstruct_event) of the form-decoded `encoded`,
/// for the shape trackers send; `None` otherwise.
pub(crate) fn unstruct_event(encoded: &[u8]) -> Option<SelfDescribing> {
    FormJson::new(encoded).envelope("unstruct_event", |reader| reader.self_describing())
}

/// [`parse_contexts`](super::iglu::parse_contexts) of the form-decoded `encoded`, for the shape
/// trackers send; `None` otherwise.
pub(crate) fn contexts(encoded: &[u8]) -> Option<Vec<SelfDescribing>> {
    FormJson::new(encoded).envelope("contexts", entity_list)
}

/// A one-pass reader of form-encoded JSON text (`+` a space, `%XX` a byte, a `%` without two
/// hex digits itself) that writes values in canonical form. Every method returns `None` to mean
/// "not handled here".
struct FormJson<'q> {
    raw: &'q [u8],
    pos: usize,
    /// Object members written so far, innermost object last: `(start, key_end, end)` offsets in
    /// the output of `"key"` and of the whole `"key":value`.
    members: Vec<(usize, usize, usize)>,
    /// The decoded text of an envelope key or a schema URI.
    scratch: Vec<u8>,
}

impl<'q> FormJson<'q> {
    fn new(raw: &'q [u8]) -> Self {
        FormJson {
            raw,
            pos: 0,
            members: Vec::with_capacity(8),
            scratch: Vec::with_capacity(128),
        }
    }

    /// The decoded byte at `pos` and the number of encoded bytes it takes.
    #[inline]
    fn byte_at(&self, pos: usize) -> Option<(u8, usize)> {
        match *self.raw.get(pos)? {
            b'%' => match self.raw.get(pos + 1..pos + 3) {
                Some(&[high, low]) => match crate::hex::pair(high, low) {
                    Some(decoded) => Some((decoded, 3)),
                    None => Some((b'%', 1)),
                },
                _ => Some((b'%', 1)),
            },
            b'+' => Some((b' ', 1)),
            b => Some((b, 1)),
        }
    }

    /// Skips JSON whitespace, then returns the next decoded byte and its encoded width without
    /// consuming it.
    fn token(&mut self) -> Option<(u8, usize)> {
        loop {
            let (b, width) = self.byte_at(self.pos)?;
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some((b, width));
            }
            self.pos += width;
        }
    }

    /// Skips JSON whitespace, then returns the next decoded byte without consuming it.
    fn peek_token(&mut self) -> Option<u8> {
        self.token().map(|(b, _)| b)
    }

    /// Consumes `byte` (after whitespace).
    fn expect(&mut self, byte: u8) -> Option<()> {
        let (b, width) = self.token()?;
        (b == byte).then(|| self.pos += width)
    }

    /// Whether only whitespace is left.
    fn at_end(&mut self) -> bool {
        self.peek_token().is_none()
    }

    /// Reads a string (after whitespace), appending its contents to `out`: with escapes
    /// rewritten the way `serde_json` writes them when `escapes`, else giving up on any. Gives
    /// up on control characters, which JSON strings cannot hold.
    fn string(&mut self, out: &mut Vec<u8>, escapes: bool) -> Option<()> {
        self.expect(b'"')?;
        loop {
            // Encoded strings are dense with escapes: a run is only looked for after a byte
            // that is not one.
            if *self.raw.get(self.pos)? != b'%' {
                let run = plain_run(&self.raw[self.pos..]);
                if run > 0 {
                    out.extend_from_slice(&self.raw[self.pos..self.pos + run]);
                    self.pos += run;
                    continue;
                }
            }
            match self.next_byte()? {
                b'"' => return Some(()),
                b'\\' if escapes => {
                    let c = read_escape(self)?;
                    out.extend_from_slice(char_text(c, &mut [0; 6]).as_bytes());
                }
                b'\\' | 0..=0x1f => return None,
                b => out.push(b),
            }
        }
    }

    /// Reads one value (after whitespace) into its canonical text.
    fn json_text(&mut self) -> Option<JsonText> {
        let mut out = Vec::with_capacity(128);
        self.value(&mut out, 0)?;
        String::from_utf8(out).ok().map(JsonText::from_canonical)
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek_token()? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => {
                out.push(b'"');
                self.string(out, true)?;
                out.push(b'"');
                Some(())
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Option<()> {
        for &expected in word {
            (self.next_byte()? == expected).then_some(())?;
        }
        out.extend_from_slice(word);
        Some(())
    }

    /// A number: its bytes decoded (a number longer than any a tracker sends is left to the
    /// usual path), then written by [`canonical_number`].
    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let mut literal = [0; 40];
        let mut len = 0;
        while let Some((b, width)) = self.byte_at(self.pos).filter(|&(b, _)| is_number_byte(b)) {
            *literal.get_mut(len)? = b;
            len += 1;
            self.pos += width;
        }
        let literal = std::str::from_utf8(&literal[..len]).ok()?;
        out.extend_from_slice(canonical_number(literal)?.as_bytes());
        Some(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.expect(b'[')?;
        out.push(b'[');
        if self.peek_token()? == b']' {
            self.expect(b']')?;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out, depth + 1)?;
            match self.peek_token()? {
                b',' => out.push(b','),
                b']' => break,
                _ => return None,
            }
            self.expect(b',')?;
        }
        self.expect(b']')?;
        out.push(b']');
        Some(())
    }

    /// An object, members sorted by key as `serde_json`'s `BTreeMap` orders them (byte order of
    /// UTF-8 is the order of `str`). Keys with escapes and duplicate keys are left to the usual
    /// path.
    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Option<()> {
        self.expect(b'{')?;
        out.push(b'{');
        if self.peek_token()? == b'}' {
            self.expect(b'}')?;
            out.push(b'}');
            return Some(());
        }
        let first_member = self.members.len();
        let body = out.len();
        loop {
            let start = out.len();
            out.push(b'"');
            self.string(out, false)?;
            out.push(b'"');
            let key_end = out.len();
            self.expect(b':')?;
            out.push(b':');
            self.value(out, depth + 1)?;
            self.members.push((start, key_end, out.len()));
            match self.peek_token()? {
                b',' => out.push(b','),
                b'}' => break,
                _ => return None,
            }
            self.expect(b',')?;
        }
        self.expect(b'}')?;
        let members = &mut self.members[first_member..];
        if key_order(members, out)? {
            // The members written again after the object in key order, then the first
            // writing removed.
            let written = out.len();
            for (i, &(start, _, end)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_within(start..end);
            }
            out.drain(body..written);
        }
        self.members.truncate(first_member);
        out.push(b'}');
        Some(())
    }

    /// A string without escapes (after whitespace), decoded into `scratch`, as text.
    fn scratch_string(&mut self) -> Option<&str> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let read = self.string(&mut scratch, false);
        self.scratch = scratch;
        read?;
        std::str::from_utf8(&self.scratch).ok()
    }

    /// A schema URI (a string without escapes, after whitespace) and its key.
    ///
    /// The entities of an event, and of the next ones, name a handful of schemas, in the same
    /// encoding: the encoded strings read lately on this thread, from their opening quote to
    /// their closing one, are kept with their keys, and a string that is one of them is not
    /// decoded again (a string's text ends at its closing quote, so the same bytes read the
    /// same).
    fn schema_key(&mut self) -> Option<Arc<SchemaKey>> {
        const REMEMBERED: usize = 8;
        thread_local! {
            static RECENT: RefCell<RecentSchemas> = const { RefCell::new(VecDeque::new()) };
        }
        self.token()?;
        let start = self.pos;
        let rest = &self.raw[start..];
        let known = RECENT.with_borrow(|recent| {
            let (encoded, key) = recent.iter().find(|(known, _)| rest.starts_with(known))?;
            Some((encoded.len(), key.clone()))
        });
        if let Some((len, key)) = known {
            self.pos += len;
            return Some(key);
        }
        let key = recent_schema_key(self.scratch_string()?)?;
        let encoded = &self.raw[start..self.pos];
        RECENT.with_borrow_mut(|recent| {
            if recent.len() == REMEMBERED {
                recent.pop_back();
            }
            recent.push_front((encoded.into(), key.clone()));
        });
        Some(key)
    }

    /// The key of a member of a self-describing object (after whitespace): `schema` or `data`,
    /// recognized in the encoding trackers use before it is decoded.
    fn member(&mut self) -> Option<Member> {
        const ENCODED: [(&[u8], Member); 2] = [
            (b"%22schema%22", Member::Schema),
            (b"%22data%22", Member::Data),
        ];
        self.token()?;
        let rest = &self.raw[self.pos..];
        if let Some(&(encoded, member)) = ENCODED.iter().find(|(e, _)| rest.starts_with(e)) {
            self.pos += encoded.len();
            return Some(member);
        }
        match self.scratch_string()? {
            "schema" => Some(Member::Schema),
            "data" => Some(Member::Data),
            _ => None,
        }
    }

    /// A `{"schema":…,"data":…}` object with exactly these two keys, in either order: the
    /// schema's key, checked by `schema`, and `data` read by `data`.
    fn schema_and<T>(
        &mut self,
        schema: impl FnOnce(&SchemaKey) -> bool,
        data: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<(Arc<SchemaKey>, T)> {
        self.expect(b'{')?;
        let (mut schema, mut data) = (Some(schema), Some(data));
        let (mut schema_read, mut data_read) = (None, None);
        loop {
            match self.member()? {
                Member::Schema if schema_read.is_none() => {
                    self.expect(b':')?;
                    let key = self.schema_key()?;
                    schema.take()?(&key).then_some(())?;
                    schema_read = Some(key);
                }
                Member::Data if data_read.is_none() => {
                    self.expect(b':')?;
                    data_read = Some(data.take()?(self)?);
                }
                _ => return None,
            }
            match self.peek_token()? {
                b',' => self.expect(b',')?,
                _ => break,
            }
        }
        self.expect(b'}')?;
        Some((schema_read?, data_read?))
    }

    /// The `data` of the envelope `iglu:com.snowplowanalytics.snowplow/<name>/jsonschema/1-*-*`
    /// that is the whole text, read by `data`.
    fn envelope<T>(mut self, name: &str, data: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let envelope = |key: &SchemaKey| key.matches(SNOWPLOW, name, "jsonschema", 1);
        let (_, data) = self.schema_and(envelope, data)?;
        self.at_end().then_some(data)
    }

    /// A self-describing entity whose `data` is any JSON value.
    fn self_describing(&mut self) -> Option<SelfDescribing> {
        let (schema, data) = self.schema_and(|_| true, |reader| reader.json_text())?;
        Some(SelfDescribing { schema, data })
    }
}

/// The members of a self-describing object.
#[derive(Clone, Copy)]
enum Member {
    Schema,
    Data,
}

/// Encoded schema strings read lately, each with its key, the latest first.
type RecentSchemas = VecDeque<(Box<[u8]>, Arc<SchemaKey>)>;

impl EntityReader for FormJson<'_> {
    fn peek_token(&mut self) -> Option<u8> {
        FormJson::peek_token(self)
    }
    fn expect(&mut self, byte: u8) -> Option<()> {
        FormJson::expect(self, byte)
    }
    fn self_describing(&mut self) -> Option<SelfDescribing> {
        FormJson::self_describing(self)
    }
}

impl JsonBytes for FormJson<'_> {
    /// The next decoded byte.
    fn next_byte(&mut self) -> Option<u8> {
        let (b, width) = self.byte_at(self.pos)?;
        self.pos += width;
        Some(b)
    }
}

/// The length of the run at the start of `raw` of bytes that stand for themselves inside a JSON
/// string: up to the first `%`, `+`, `"`, `\` or control character. Eight bytes at a time.
fn plain_run(raw: &[u8]) -> usize {
    swar::position(
        raw,
        |word| {
            swar::equal(word, b'%')
                | swar::equal(word, b'+')
                | swar::equal(word, b'"')
                | swar::equal(word, b'\\')
                | swar::below(word, 0x20)
        },
        |b| matches!(b, b'%' | b'+' | b'"' | b'\\' | 0..=0x1f),
    )
    .unwrap_or(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::iglu::{parse_contexts, parse_unstruct_event};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Form-decodes `encoded` as the query-string parser does.
    fn decode(encoded: &[u8]) -> Vec<u8> {
        let query = [b"x=", encoded].concat();
        let params = crate::tracker::parse_query(&query);
        let param = params.param("x").unwrap();
        if param.invalid_utf8() {
            // Not UTF-8: the reader must give up, whatever the replacement characters say.
            return vec![0xff];
        }
        param.value().as_bytes().to_vec()
    }

    /// Percent-encodes the bytes `keep` does not keep, spaces as `+` when `plus`.
    fn encode(text: &[u8], keep: impl Fn(u8) -> bool, plus: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in text {
            if plus && b == b' ' {
                out.push(b'+');
            } else if keep(b) && b != b'%' && b != b'+' && b != b'&' {
                out.push(b);
            } else {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            }
        }
        out
    }

    /// Like the JavaScript tracker's `encodeURIComponent`.
    fn encode_uri_component(text: &str) -> Vec<u8> {
        encode(
            text.as_bytes(),
            |b| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b),
            false,
        )
    }

    const CO: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b"}},{"schema":"iglu:com.acme/productEntity/jsonschema/1-0-2","data":{"sku":"SKU-0","name":"Zo\u00eb \"Z\" boots\t\u6771\u4eac","price":99.5,"tags":[1,-0,2e3,true,null,{}],"x":{"b":1,"a":"\ud83d\ude80 \/"}}}]}"#;

    const UE: &str = r#" { "data" : { "data" : { "targetUrl" : "https://example.com/a b" , "elementClasses" : [ "x" ] } , "schema" : "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1" } , "schema" : "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0" } "#;

    #[test]
    fn reads_what_the_decoded_text_reads() {
        for encoded in [
            encode_uri_component(CO),
            encode(CO.as_bytes(), |b| b.is_ascii_alphanumeric(), true),
            encode(CO.as_bytes(), |b| b.is_ascii_graphic() || b >= 0x80, true),
            CO.as_bytes().to_vec(),
        ] {
            let want = parse_contexts(&decode(&encoded)).unwrap();
            assert_eq!(contexts(&encoded), Some(want));
        }
        for encoded in [
            encode_uri_component(UE),
            encode(UE.as_bytes(), |_| false, true),
        ] {
            let want = parse_unstruct_event(&decode(&encoded)).unwrap();
            assert_eq!(unstruct_event(&encoded), Some(want));
        }
    }

    #[test]
    fn lowercase_escapes_and_literal_percent_signs() {
        let text = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":{"p":"100%","q":"%zz"}}]}"#;
        let encoded = text.replace('{', "%7b").replace('"', "%22");
        let want = parse_contexts(&decode(encoded.as_bytes())).unwrap();
        assert_eq!(contexts(encoded.as_bytes()), Some(want));
    }

    #[test]
    fn gives_up_where_the_usual_path_must_judge() {
        let cases = [
            // not UTF-8 once decoded, or split between an encoded and a plain byte
            "%7B%22schema%22%3A%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%7B%22schema%22%3A%22iglu%3Acom.acme%2Fx%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%22%E9%22%7D%5D%7D",
            // a control character inside a string
            "%7B%22schema%22%3A%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%7B%22schema%22%3A%22iglu%3Acom.acme%2Fx%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%22a%09b%22%7D%5D%7D",
            // the wrong envelope
            "%7B%22schema%22%3A%22iglu%3Acom.acme%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%5D%7D",
            // duplicate keys
            "%7B%22schema%22%3A%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%7B%22schema%22%3A%22iglu%3Acom.acme%2Fx%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%7B%22a%22%3A1%2C%22a%22%3A2%7D%7D%5D%7D",
            // trailing text
            "%7B%22schema%22%3A%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%5D%7Dx",
            "%7B%22schema%22%3A",
        ];
        for encoded in cases {
            assert_eq!(contexts(encoded.as_bytes()), None, "{encoded}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        super::super::json_text::tests::json_values(
            "[a-c\u{0}-\u{1f}\"\\\\/%+ é🚀]{0,6}",
            "[a-dK_é%+ ]{0,3}",
        )
    }

    proptest! {
        #[test]
        fn agrees_with_decoding_then_reading(
            entities in prop::collection::vec(json_value(), 0..3),
            keep in prop::collection::vec(any::<bool>(), 256),
            plus in any::<bool>(),
        ) {
            let entities: Vec<Value> = entities
                .into_iter()
                .map(|data| json!({"schema": "iglu:com.acme/thing/jsonschema/1-0-0", "data": data}))
                .collect();
            let text = json!({
                "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                "data": entities,
            })
            .to_string();
            let encoded = encode(text.as_bytes(), |b| keep[usize::from(b)], plus);
            let want = parse_contexts(&decode(&encoded)).ok();
            prop_assert_eq!(contexts(&encoded), want);
        }

        #[test]
        fn never_claims_what_the_usual_path_rejects(
            encoded in "[{}\\[\\]\":,0-9a-z%+ .\\\\-]{0,40}",
        ) {
            let encoded = format!(
                "%7B%22schema%22%3A%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A%5B%7B%22schema%22%3A%22iglu%3Acom.acme%2Fx%2Fjsonschema%2F1-0-0%22%2C%22data%22%3A{encoded}%7D%5D%7D"
            );
            if let Some(read) = contexts(encoded.as_bytes()) {
                prop_assert_eq!(Ok(read), parse_contexts(&decode(encoded.as_bytes())));
            }
        }

        #[test]
        fn any_bytes_read_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
            // A query-string value never holds a `&`.
            prop_assume!(!bytes.contains(&b'&'));
            if let Some(read) = contexts(&bytes) {
                prop_assert_eq!(Ok(read), parse_contexts(&decode(&bytes)));
            }
            if let Some(read) = unstruct_event(&bytes) {
                prop_assert_eq!(Ok(read), parse_unstruct_event(&decode(&bytes)));
            }
        }
    }
}
