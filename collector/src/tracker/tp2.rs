//! tp2 POST bodies: the `payload_data` envelope holding a batch of events.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::iglu::{recent_schema_key, truncate, JsonType};
use super::json_text::Canonicalizer;
use super::query::{Param, Params};

/// A tp2 body that cannot be read at all. Problems inside one event's parameters are not errors
/// here: they surface as violations when that event is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tp2Error {
    /// Not JSON (or not UTF-8).
    #[error("tp2 body is not valid JSON: {message}")]
    NotJson {
        /// serde_json's message, with line and column.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// JSON, but not `{"schema":"…","data":[{…},…]}` with string-keyed event objects.
    #[error("tp2 body is not a payload_data envelope: {message}")]
    NotPayloadData {
        /// serde_json's message, with line and column.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The envelope's schema is not `payload_data` 1-0-*.
    #[error(
        "tp2 body has schema {found:?}, expected iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-*"
    )]
    WrongSchema {
        /// The schema sent (truncated to 256 bytes).
        found: String,
    },
    /// `data` is an empty array (the schema requires at least one event).
    #[error("tp2 body has no events: \"data\" is an empty array")]
    NoEvents,
}

impl From<serde_json::Error> for Tp2Error {
    fn from(err: serde_json::Error) -> Self {
        let (message, line, column) = (err.to_string(), err.line(), err.column());
        if err.is_data() {
            Tp2Error::NotPayloadData {
                message,
                line,
                column,
            }
        } else {
            Tp2Error::NotJson {
                message,
                line,
                column,
            }
        }
    }
}

/// Parses a tp2 POST body into one [`Params`] per event, in order.
///
/// The body must be `{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-X",
/// "data":[{…},…]}` with at least one event; other top-level keys are ignored. Each event is an
/// object of parameters: strings are taken as they are (borrowed from `body` when they contain no
/// JSON escapes), numbers and booleans are stringified, and `null`, arrays and objects are kept as
/// their JSON text with [`Param::json_type`] set so decoding reports them. Duplicate keys inside
/// one event behave as in a query string: the first wins.
pub fn parse_tp2(body: &[u8]) -> Result<Vec<Params<'_>>, Tp2Error> {
    let envelope = match fast_envelope(body) {
        Some(envelope) => envelope,
        None => serde_json::from_slice(body)?,
    };
    // Every body names the same schema: its key comes from the per-thread cache of recent ones.
    let schema_ok = recent_schema_key(&envelope.schema.0).is_some_and(|key| {
        key.matches(
            "com.snowplowanalytics.snowplow",
            "payload_data",
            "jsonschema",
            1,
        ) && key.revision == 0
    });
    if !schema_ok {
        return Err(Tp2Error::WrongSchema {
            found: truncate(&envelope.schema.0, 256).to_owned(),
        });
    }
    if envelope.data.is_empty() {
        return Err(Tp2Error::NoEvents);
    }
    Ok(envelope.data.into_iter().map(|event| event.0).collect())
}

/// The envelope read in one pass, for the shape trackers send: `schema` and `data` only (their
/// keys and the schema without escapes), every parameter value a string. `None` for anything
/// else (including every error), which `serde_json` then reads or explains; what this reads,
/// `serde_json` reads the same.
fn fast_envelope(body: &[u8]) -> Option<Envelope<'_>> {
    let mut reader = Canonicalizer::new(std::str::from_utf8(body).ok()?);
    reader.expect(b'{')?;
    let (mut schema, mut data) = (None, None);
    loop {
        match reader.plain_string()? {
            "schema" if schema.is_none() => {
                reader.expect(b':')?;
                schema = Some(Text(Cow::Borrowed(reader.plain_string()?)));
            }
            "data" if data.is_none() => {
                reader.expect(b':')?;
                data = Some(fast_events(&mut reader)?);
            }
            _ => return None,
        }
        match reader.peek_token()? {
            b',' => reader.expect(b',')?,
            _ => break,
        }
    }
    reader.expect(b'}')?;
    reader.at_end().then_some(())?;
    Some(Envelope {
        schema: schema?,
        data: data?,
    })
}

/// `[{…},…]`: events whose parameter values are all strings.
fn fast_events<'a>(reader: &mut Canonicalizer<'a>) -> Option<Vec<EventObject<'a>>> {
    reader.expect(b'[')?;
    let mut events = Vec::new();
    if reader.peek_token()? == b']' {
        reader.expect(b']')?;
        return Some(events);
    }
    loop {
        reader.expect(b'{')?;
        let mut params = Vec::with_capacity(32);
        if reader.peek_token()? != b'}' {
            loop {
                let key = reader.string_value()?;
                reader.expect(b':')?;
                params.push(Param::new(key, reader.string_value()?));
                match reader.peek_token()? {
                    b',' => reader.expect(b',')?,
                    _ => break,
                }
            }
        }
        reader.expect(b'}')?;
        events.push(EventObject(params.into_iter().collect()));
        match reader.peek_token()? {
            b',' => reader.expect(b',')?,
            _ => break,
        }
    }
    reader.expect(b']')?;
    Some(events)
}

/// `{"schema":…,"data":[…]}`; other keys are ignored.
struct Envelope<'a> {
    schema: Text<'a>,
    data: Vec<EventObject<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvelopeVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
            type Value = Envelope<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object {"schema":…,"data":[…]}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut schema, mut data) = (None, None);
                while let Some(Text(key)) = map.next_key()? {
                    match &*key {
                        "schema" if schema.is_some() => {
                            return Err(de::Error::duplicate_field("schema"))
                        }
                        "schema" => schema = Some(map.next_value()?),
                        "data" if data.is_some() => return Err(de::Error::duplicate_field("data")),
                        "data" => data = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Envelope {
                    schema: schema.ok_or_else(|| de::Error::missing_field("schema"))?,
                    data: data.ok_or_else(|| de::Error::missing_field("data"))?,
                })
            }
        }
        deserializer.deserialize_map(EnvelopeVisitor(PhantomData))
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// One event's parameters.
struct EventObject<'a>(Params<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for EventObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EventVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for EventVisitor<'a> {
            type Value = EventObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event: an object of tracker parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut params = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some(Text(key)) = map.next_key()? {
                    let ParamValue(value, json_type) = map.next_value()?;
                    let mut param = Param::new(key, value);
                    param.json_type = json_type;
                    params.push(param);
                }
                Ok(EventObject(params.into_iter().collect()))
            }
        }
        deserializer.deserialize_map(EventVisitor(PhantomData))
    }
}

/// A parameter value: its text, and its JSON type when it was not a string.
struct ParamValue<'a>(Cow<'a, str>, Option<JsonType>);

impl<'de: 'a, 'a> Deserialize<'de> for ParamValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ValueVisitor<'a> {
            type Value = ParamValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a parameter value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ParamValue(Cow::Borrowed(v), None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ParamValue(Cow::Owned(v.to_owned()), None))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ParamValue(Cow::Owned(v), None))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(other(v.to_string(), JsonType::Bool))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(other(v.to_string(), JsonType::Number))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(other(v.to_string(), JsonType::Number))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Rust prints the shortest text that reads back as the same f64, without an
                // exponent: 1.5 → "1.5", 1.7e12 → "1700000000000".
                Ok(other(v.to_string(), JsonType::Number))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(other("null".to_owned(), JsonType::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let value =
                    serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(other(value.to_string(), JsonType::Array))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let value =
                    serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(other(value.to_string(), JsonType::Object))
            }
        }
        deserializer.deserialize_any(ValueVisitor(PhantomData))
    }
}

fn other(text: String, json_type: JsonType) -> ParamValue<'static> {
    ParamValue(Cow::Owned(text), Some(json_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn reads_several_events() {
        let body = br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[
            {"e":"pv","p":"web","url":"https://example.com/","page":"Caf\u00e9"},
            {"e":"se","p":"web","se_ca":"video","se_va":12.5,"vid":3,"cookie":true,"e":"dup"}
        ]}"#;
        let events = parse_tp2(body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].get("url"), Some("https://example.com/"));
        assert_eq!(events[0].param("url").unwrap().form_encoded(), None);
        assert_eq!(events[0].get("page"), Some("Café"));
        assert_eq!(events[1].get("e"), Some("se"));
        assert_eq!(events[1].duplicates().len(), 1);
        assert_eq!(events[1].get("se_va"), Some("12.5"));
        assert_eq!(events[1].get("vid"), Some("3"));
        assert_eq!(events[1].get("cookie"), Some("true"));
        assert_eq!(
            events[1].param("vid").unwrap().json_type,
            Some(JsonType::Number)
        );
    }

    #[test]
    fn keeps_other_json_types_as_text_and_flags_them() {
        let body = br#"{"data":[{"e":"pv","co":{"a":[1,null]},"x":null,"y":[true]}],"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-0"}"#;
        let events = parse_tp2(body).unwrap();
        let types: Vec<_> = events[0]
            .iter()
            .map(|p| (&*p.key, p.value(), p.json_type))
            .collect();
        assert_eq!(
            types,
            [
                ("e", "pv", None),
                ("co", r#"{"a":[1,null]}"#, Some(JsonType::Object)),
                ("x", "null", Some(JsonType::Null)),
                ("y", "[true]", Some(JsonType::Array)),
            ]
        );
    }

    #[test]
    fn the_fast_path_reads_what_serde_json_reads() {
        let bodies: [&[u8]; 7] = [
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","co":"{\"a\": \"Zo\\u00eb \\\"Z\\\"\"}","page":"Caf\u00e9 \ud83d\ude00\t\/"}]}"#,
            b" {\n \"data\" : [ { } , {\"e\":\"pv\",\"e\":\"se\",\"k\\u0065y\":\"v\"} ] ,\r\n\"schema\":\"s\" } ",
            br#"{"schema":"s","data":[]}"#,
            br#"{"schema":"s","data":[{"e":"pv","x":1}]}"#,
            br#"{"schema":"s","data":[{"e":"pv"}],"other":true}"#,
            br#"{"schema":"s","data":[{"e":"pv\ud800"}]}"#,
            br#"{"schema":"s","data":[{"e":"pv"}]} x"#,
        ];
        for body in bodies {
            let by_serde = serde_json::from_slice::<Envelope<'_>>(body)
                .map(|envelope| (envelope.schema.0, envelope.data.into_iter().map(|e| e.0)));
            let by_serde = by_serde
                .ok()
                .map(|(schema, data)| (schema, data.collect::<Vec<_>>()));
            let fast = fast_envelope(body)
                .map(|envelope| (envelope.schema.0, envelope.data.into_iter().map(|e| e.0)));
            let fast = fast.map(|(schema, data)| (schema, data.collect::<Vec<_>>()));
            if let Some(fast) = fast {
                assert_eq!(Some(fast), by_serde, "{}", String::from_utf8_lossy(body));
            }
        }
        assert!(fast_envelope(bodies[0]).is_some() && fast_envelope(bodies[1]).is_some());
        assert!(bodies[3..].iter().all(|body| fast_envelope(body).is_none()));
    }

    #[test]
    fn rejects_malformed_bodies() {
        let bodies: [&[u8]; 10] = [
            b"",
            b"{\"schema\":",
            b"\xff",
            b"[]",
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"}"#,
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":["e=pv"]}"#,
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[]}"#,
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"e":"pv"}]}"#,
            br#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-1-0","data":[{"e":"pv"}]}"#,
            br#"{"schema":"payload_data","data":[{"e":"pv"}]}"#,
        ];
        let messages: Vec<String> = bodies
            .iter()
            .map(|body| parse_tp2(body).unwrap_err().to_string())
            .collect();
        expect![[r#"
            tp2 body is not valid JSON: EOF while parsing a value at line 1 column 0
            tp2 body is not valid JSON: EOF while parsing a value at line 1 column 10
            tp2 body is not valid JSON: expected value at line 1 column 1
            tp2 body is not a payload_data envelope: invalid type: sequence, expected an object {"schema":…,"data":[…]} at line 1 column 0
            tp2 body is not a payload_data envelope: missing field `data` at line 1 column 78
            tp2 body is not a payload_data envelope: invalid type: string "e=pv", expected an event: an object of tracker parameters at line 1 column 92
            tp2 body has no events: "data" is an empty array
            tp2 body has schema "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", expected iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-*
            tp2 body has schema "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-1-0", expected iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-*
            tp2 body has schema "payload_data", expected iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-*
        "#]]
        .assert_eq(&(messages.join("\n") + "\n"));
    }
}
