//! Iglu schema URIs, self-describing JSON and the `unstruct_event` / `contexts` envelopes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json_text::{Canonicalizer, JsonText};

/// Snowplow's own Iglu vendor.
pub(crate) const SNOWPLOW: &str = "com.snowplowanalytics.snowplow";

/// The type of a JSON value, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl JsonType {
    /// The type of `value`.
    pub fn of(value: &Value) -> JsonType {
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Bool,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// The lower-case name: `null`, `bool`, `number`, `string`, `array`, `object`.
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "bool",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Iglu schema key, `iglu:vendor/name/format/model-revision-addition`.
///
/// Displays and serializes as that URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaKey {
    /// Reverse-DNS vendor, `[a-zA-Z0-9-_.]+`, e.g. `com.snowplowanalytics.snowplow`.
    pub vendor: String,
    /// Schema name, `[a-zA-Z0-9-_]+`, e.g. `page_view`.
    pub name: String,
    /// Schema format, `[a-zA-Z0-9-_]+`, in practice `jsonschema`.
    pub format: String,
    /// SchemaVer MODEL (≥ 1): breaking changes.
    pub model: u32,
    /// SchemaVer REVISION: changes that may break some historical data.
    pub revision: u32,
    /// SchemaVer ADDITION: changes compatible with all historical data.
    pub addition: u32,
}

/// A string that is not a valid Iglu schema URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Iglu schema URI {uri:?}: {reason}")]
pub struct SchemaKeyError {
    /// The offending text (truncated to 256 bytes).
    pub uri: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl SchemaKey {
    /// Parses `iglu:vendor/name/format/M-R-A`.
    ///
    /// Vendor `[a-zA-Z0-9-_.]+`; name and format `[a-zA-Z0-9-_]+`; version SchemaVer with
    /// MODEL ≥ 1 and no leading zeros in any of its numbers.
    pub fn parse(uri: &str) -> Result<SchemaKey, SchemaKeyError> {
        let fail = |reason| SchemaKeyError {
            uri: truncate(uri, 256).to_owned(),
            reason,
        };
        let rest = uri
            .strip_prefix("iglu:")
            .ok_or_else(|| fail("must start with `iglu:`"))?;
        let Some([vendor, name, format, version]) = split_exact(rest, b'/') else {
            return Err(fail("expected four parts, vendor/name/format/version"));
        };
        let word = |text: &str, dots: bool| {
            !text.is_empty()
                && text.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (dots && b == b'.')
                })
        };
        if !word(vendor, true) {
            return Err(fail("vendor must be [a-zA-Z0-9-_.]+"));
        }
        if !word(name, false) {
            return Err(fail("name must be [a-zA-Z0-9-_]+"));
        }
        if !word(format, false) {
            return Err(fail("format must be [a-zA-Z0-9-_]+"));
        }
        let bad_version =
            || fail("version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros");
        let Some([Some(model), Some(revision), Some(addition)]) =
            split_exact(version, b'-').map(|numbers: [&str; 3]| numbers.map(schemaver_number))
        else {
            return Err(bad_version());
        };
        if model == 0 {
            return Err(bad_version());
        }
        Ok(SchemaKey {
            vendor: vendor.to_owned(),
            name: name.to_owned(),
            format: format.to_owned(),
            model,
            revision,
            addition,
        })
    }

    /// The SchemaVer, `M-R-A`. The numbers are written directly rather than through the
    /// formatting machinery: the processor asks for it for every self-describing event.
    #[inline]
    pub fn version(&self) -> String {
        let mut version = String::with_capacity(16);
        for (i, number) in [self.model, self.revision, self.addition]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                version.push('-');
            }
            version.push_str(itoa::Buffer::new().format(number));
        }
        version
    }

    /// Whether this key matches the criterion `vendor/name/format/model-*-*`.
    pub fn matches(&self, vendor: &str, name: &str, format: &str, model: u32) -> bool {
        self.vendor == vendor && self.name == name && self.format == format && self.model == model
    }
}

/// `text` split at every `sep` into exactly `N` parts.
fn split_exact<const N: usize>(text: &str, sep: u8) -> Option<[&str; N]> {
    let mut parts = [""; N];
    let mut rest = text;
    for part in &mut parts[..N - 1] {
        let at = rest.bytes().position(|b| b == sep)?;
        *part = &rest[..at];
        rest = &rest[at + 1..];
    }
    if rest.bytes().any(|b| b == sep) {
        return None;
    }
    parts[N - 1] = rest;
    Some(parts)
}

/// One SchemaVer number: `0` or digits without a leading zero, fitting a `u32`.
fn schemaver_number(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "iglu:{}/{}/{}/{}-{}-{}",
            self.vendor, self.name, self.format, self.model, self.revision, self.addition
        )
    }
}

impl FromStr for SchemaKey {
    type Err = SchemaKeyError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        SchemaKey::parse(uri)
    }
}

impl Serialize for SchemaKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let uri = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        SchemaKey::parse(&uri).map_err(serde::de::Error::custom)
    }
}

/// A self-describing JSON document: `{"schema":"iglu:…","data":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfDescribing {
    /// The schema `data` claims to follow. Shared: the entities of many events name the same
    /// few schemas, and the readers hand out one key per schema (see [`SchemaKey`] for the
    /// value), so that an entity costs no copy of its key.
    pub schema: Arc<SchemaKey>,
    /// The instance itself, as canonical JSON text.
    pub data: JsonText,
}

/// JSON that is not a self-describing document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfDescribingError {
    /// Not a JSON object at all.
    #[error("expected a self-describing JSON object {{\"schema\":…,\"data\":…}}, found {found}")]
    NotAnObject {
        /// What was found instead.
        found: JsonType,
    },
    /// No `schema` key.
    #[error("missing the \"schema\" key")]
    MissingSchema,
    /// `schema` is not a string.
    #[error("\"schema\" must be a string, found {found}")]
    SchemaNotAString {
        /// What was found instead.
        found: JsonType,
    },
    /// `schema` is not an Iglu URI.
    #[error(transparent)]
    SchemaKey(#[from] SchemaKeyError),
    /// No `data` key.
    #[error("missing the \"data\" key")]
    MissingData,
}

impl SelfDescribing {
    /// Reads a self-describing document out of a JSON value. Keys other than `schema` and `data`
    /// are ignored.
    pub fn from_value(value: Value) -> Result<SelfDescribing, SelfDescribingError> {
        let (schema, data) = schema_and_data(value)?;
        Ok(SelfDescribing {
            schema: Arc::new(schema),
            data: JsonText::from_value(&data),
        })
    }
}

/// The schema and the `data` of a self-describing document, `data` left a `Value`.
fn schema_and_data(value: Value) -> Result<(SchemaKey, Value), SelfDescribingError> {
    let Value::Object(mut object) = value else {
        return Err(SelfDescribingError::NotAnObject {
            found: JsonType::of(&value),
        });
    };
    let schema = match object.remove("schema") {
        None => return Err(SelfDescribingError::MissingSchema),
        Some(Value::String(uri)) => SchemaKey::parse(&uri)?,
        Some(other) => {
            return Err(SelfDescribingError::SchemaNotAString {
                found: JsonType::of(&other),
            })
        }
    };
    let data = object
        .remove("data")
        .ok_or(SelfDescribingError::MissingData)?;
    Ok((schema, data))
}

/// Why an `ue_pr`/`ue_px`/`co`/`cx` payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// `ue_px`/`cx` is not base64.
    #[error("invalid base64: {0}")]
    Base64(String),
    /// Not JSON (or not UTF-8).
    #[error("invalid JSON: {0}")]
    NotJson(String),
    /// JSON, but the envelope is not self-describing.
    #[error("envelope is not self-describing JSON: {0}")]
    NotSelfDescribing(SelfDescribingError),
    /// A self-describing envelope of the wrong schema.
    #[error("envelope schema is {found}, expected {expected}")]
    WrongEnvelope {
        /// The envelope's schema.
        found: SchemaKey,
        /// The criterion it should match.
        expected: &'static str,
    },
    /// A `contexts` envelope whose `data` is not an array.
    #[error("contexts envelope \"data\" must be an array, found {found}")]
    ContextsNotAnArray {
        /// What was found instead.
        found: JsonType,
    },
    /// The unstruct event (or a context entity) inside the envelope is not self-describing.
    #[error("{} is not self-describing JSON: {error}", entity_name(*index))]
    Entity {
        /// Position in the contexts array; `None` for the unstruct event.
        index: Option<usize>,
        /// What is wrong with it.
        error: SelfDescribingError,
    },
}

fn entity_name(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("context entity {i}"),
        None => "the unstruct event".to_owned(),
    }
}

impl PayloadError {
    /// Whether this is a schema violation (the JSON itself) rather than a transport-level one
    /// (base64).
    pub fn is_schema_violation(&self) -> bool {
        !matches!(self, PayloadError::Base64(_))
    }
}

const UNSTRUCT_CRITERION: &str =
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-*-*";
const CONTEXTS_CRITERION: &str = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-*-*";

/// Reads an `unstruct_event` envelope (`ue_pr` text, or decoded `ue_px`) and returns the event it
/// wraps.
///
/// The envelope must be `iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-*-*`
/// (in practice 1-0-0) and its `data` a self-describing document.
pub fn parse_unstruct_event(json: &[u8]) -> Result<SelfDescribing, PayloadError> {
    fast_unstruct_event(json).map_or_else(|| unstruct_event_by_value(json), Ok)
}

/// Reads a `contexts` envelope (`co` text, or decoded `cx`) and returns the entities it wraps.
///
/// The envelope must be `iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-*-*` (1-0-0
/// or 1-0-1) and its `data` an array of self-describing documents (possibly empty).
pub fn parse_contexts(json: &[u8]) -> Result<Vec<SelfDescribing>, PayloadError> {
    fast_contexts(json).map_or_else(|| contexts_by_value(json), Ok)
}

/// [`parse_unstruct_event`] through a `serde_json::Value`: every input, every error.
fn unstruct_event_by_value(json: &[u8]) -> Result<SelfDescribing, PayloadError> {
    let envelope = envelope(json, "unstruct_event", UNSTRUCT_CRITERION)?;
    SelfDescribing::from_value(envelope)
        .map_err(|error| PayloadError::Entity { index: None, error })
}

/// [`parse_contexts`] through a `serde_json::Value`: every input, every error.
fn contexts_by_value(json: &[u8]) -> Result<Vec<SelfDescribing>, PayloadError> {
    let envelope = envelope(json, "contexts", CONTEXTS_CRITERION)?;
    let Value::Array(entities) = envelope else {
        return Err(PayloadError::ContextsNotAnArray {
            found: JsonType::of(&envelope),
        });
    };
    entities
        .into_iter()
        .enumerate()
        .map(|(i, entity)| {
            SelfDescribing::from_value(entity).map_err(|error| PayloadError::Entity {
                index: Some(i),
                error,
            })
        })
        .collect()
}

/// Checks the envelope and returns its `data` as a `Value`.
fn envelope(json: &[u8], name: &str, criterion: &'static str) -> Result<Value, PayloadError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|err| PayloadError::NotJson(err.to_string()))?;
    let (schema, data) = schema_and_data(value).map_err(PayloadError::NotSelfDescribing)?;
    if !schema.matches(SNOWPLOW, name, "jsonschema", 1) {
        return Err(PayloadError::WrongEnvelope {
            found: schema,
            expected: criterion,
        });
    }
    Ok(data)
}

/// [`parse_unstruct_event`] in one pass, for the shape trackers send; `None` otherwise.
fn fast_unstruct_event(json: &[u8]) -> Option<SelfDescribing> {
    fast_envelope(json, "unstruct_event", |reader| reader.self_describing())
}

/// [`parse_contexts`] in one pass, for the shape trackers send; `None` otherwise.
fn fast_contexts(json: &[u8]) -> Option<Vec<SelfDescribing>> {
    fast_envelope(json, "contexts", |reader| entity_list(reader))
}

/// What reading a list of entities needs of a one-pass reader: of the text itself
/// ([`Canonicalizer`]) or of its form-encoded form (`form_json`).
pub(crate) trait EntityReader {
    /// Skips whitespace and returns the next byte without consuming it.
    fn peek_token(&mut self) -> Option<u8>;
    /// Consumes `byte` (after whitespace).
    fn expect(&mut self, byte: u8) -> Option<()>;
    /// Reads one self-describing object (after whitespace).
    fn self_describing(&mut self) -> Option<SelfDescribing>;
}

/// `[entity, …]` (after whitespace), the `data` of a contexts envelope.
pub(crate) fn entity_list(reader: &mut impl EntityReader) -> Option<Vec<SelfDescribing>> {
    reader.expect(b'[')?;
    if reader.peek_token()? == b']' {
        reader.expect(b']')?;
        return Some(Vec::new());
    }
    // Room for the few entities an event carries, so that they are added without growing.
    let mut entities = Vec::with_capacity(4);
    loop {
        entities.push(reader.self_describing()?);
        match reader.peek_token()? {
            b',' => reader.expect(b',')?,
            _ => break,
        }
    }
    reader.expect(b']')?;
    Some(entities)
}

impl EntityReader for Canonicalizer<'_> {
    fn peek_token(&mut self) -> Option<u8> {
        Canonicalizer::peek_token(self)
    }
    fn expect(&mut self, byte: u8) -> Option<()> {
        Canonicalizer::expect(self, byte)
    }
    fn self_describing(&mut self) -> Option<SelfDescribing> {
        Canonicalizer::self_describing(self)
    }
}

/// The fast path of the envelope readers: UTF-8 text in the shape trackers send, read in one
/// pass with `data` kept as canonical text. `None` for anything else (including every error),
/// which the `serde_json` path then reads or explains.
fn fast_envelope<T>(
    json: &[u8],
    name: &str,
    data: impl FnOnce(&mut Canonicalizer<'_>) -> Option<T>,
) -> Option<T> {
    let text = std::str::from_utf8(json).ok()?;
    let mut reader = Canonicalizer::new(text);
    let (schema, data) = reader.schema_and(data)?;
    (is_envelope(schema, name) && reader.at_end()).then_some(data)
}

/// Whether `uri` is `iglu:com.snowplowanalytics.snowplow/<name>/jsonschema/1-*-*`: what
/// [`SchemaKey::parse`] and [`SchemaKey::matches`] would say, without building the key.
fn is_envelope(uri: &str, name: &str) -> bool {
    let version = uri
        .strip_prefix("iglu:")
        .and_then(|rest| rest.strip_prefix(SNOWPLOW))
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix("/jsonschema/1-"));
    version
        .and_then(|version| split_exact(version, b'-'))
        .is_some_and(|[revision, addition]| {
            schemaver_number(revision).is_some() && schemaver_number(addition).is_some()
        })
}

impl<'t> Canonicalizer<'t> {
    /// A `{"schema":…,"data":…}` object with exactly these two keys, in either order, the
    /// schema a string without escapes (returned as it is); `data` read by `data`.
    fn schema_and<T>(&mut self, data: impl FnOnce(&mut Self) -> Option<T>) -> Option<(&'t str, T)> {
        self.expect(b'{')?;
        let mut data = Some(data);
        let (mut schema, mut value) = (None, None);
        loop {
            // The keys as trackers write them are recognized without reading them as strings.
            let key = if self.skip(r#""schema""#) {
                "schema"
            } else if self.skip(r#""data""#) {
                "data"
            } else {
                self.plain_string()?
            };
            match key {
                "schema" if schema.is_none() => {
                    self.expect(b':')?;
                    schema = Some(self.plain_string()?);
                }
                "data" if value.is_none() => {
                    self.expect(b':')?;
                    value = Some(data.take()?(self)?);
                }
                _ => return None,
            }
            match self.peek_token()? {
                b',' => self.expect(b',')?,
                _ => break,
            }
        }
        self.expect(b'}')?;
        Some((schema?, value?))
    }

    /// A self-describing entity whose `data` is any JSON value.
    fn self_describing(&mut self) -> Option<SelfDescribing> {
        let (schema, data) = self.schema_and(|reader| reader.json_text())?;
        let schema = recent_schema_key(schema)?;
        Some(SelfDescribing { schema, data })
    }
}

/// [`SchemaKey::parse`], remembering the last few keys read on this thread: the entities of an
/// event, and of the next ones, come from a handful of schemas, which then share one key each.
pub(crate) fn recent_schema_key(uri: &str) -> Option<Arc<SchemaKey>> {
    const REMEMBERED: usize = 8;
    thread_local! {
        static RECENT: RefCell<VecDeque<(Box<str>, Arc<SchemaKey>)>> =
            const { RefCell::new(VecDeque::new()) };
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some((_, key)) = recent.iter().find(|(known, _)| **known == *uri) {
            return Some(key.clone());
        }
        let key = Arc::new(SchemaKey::parse(uri).ok()?);
        if recent.len() == REMEMBERED {
            recent.pop_back();
        }
        recent.push_front((uri.into(), key.clone()));
        Some(key)
    })
}

/// Padding optional, non-zero trailing bits tolerated.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);

/// Base64 with the standard alphabet (`+/`), lenient.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// Base64 with the URL-safe alphabet (`-_`), lenient.
const LENIENT_BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes `ue_px`/`cx` text: URL-safe or standard alphabet (even mixed), padded or not, with a
/// space read as `+` (what form decoding makes of an unescaped `+`).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, PayloadError> {
    // Trackers send the URL-safe alphabet: then the text is decoded as it is. Otherwise (a `+`,
    // `/` or space in it) it is first mapped to the standard alphabet. The two alphabets match
    // byte for byte, so either way the same errors come out at the same offsets.
    let decoded = match memchr::memchr3(b'+', b'/', b' ', text.as_bytes()) {
        None => LENIENT_BASE64_URL_SAFE.decode(text),
        Some(_) => {
            let normalized: Vec<u8> = text
                .bytes()
                .map(|b| match b {
                    b'-' | b' ' => b'+',
                    b'_' => b'/',
                    other => other,
                })
                .collect();
            LENIENT_BASE64.decode(&normalized)
        }
    };
    decoded.map_err(|err| {
        PayloadError::Base64(match err {
            DecodeError::InvalidByte(offset, _) | DecodeError::InvalidLastSymbol(offset, _) => {
                let c = text.get(offset..).and_then(|rest| rest.chars().next());
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                format!("unexpected {c:?} at offset {offset}")
            }
            DecodeError::InvalidLength(length) => format!("impossible length {length}"),
            DecodeError::InvalidPadding => "invalid padding".to_owned(),
        })
    })
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use expect_test::expect;

    #[test]
    fn schema_key_round_trips() {
        let key = SchemaKey::parse("iglu:com.acme-inc/product_Entity/jsonschema/12-0-3").unwrap();
        assert_eq!(key.vendor, "com.acme-inc");
        assert_eq!(key.name, "product_Entity");
        assert_eq!(key.format, "jsonschema");
        assert_eq!((key.model, key.revision, key.addition), (12, 0, 3));
        assert_eq!(key.version(), "12-0-3");
        let wide = SchemaKey::parse("iglu:com.acme/click/jsonschema/100-10-4294967295").unwrap();
        assert_eq!(wide.version(), "100-10-4294967295");
        assert_eq!(
            key.to_string(),
            "iglu:com.acme-inc/product_Entity/jsonschema/12-0-3"
        );
        assert_eq!(
            serde_json::to_string(&key).unwrap(),
            r#""iglu:com.acme-inc/product_Entity/jsonschema/12-0-3""#
        );
        assert_eq!("iglu:a/b/c/1-0-0".parse::<SchemaKey>().unwrap().name, "b");
    }

    #[test]
    fn malformed_schema_keys_say_why() {
        let cases = [
            "com.acme/x/jsonschema/1-0-0",
            "iglu:com.acme/x/jsonschema",
            "iglu:com.acme/x/jsonschema/1-0-0/extra",
            "iglu:com acme/x/jsonschema/1-0-0",
            "iglu:com.acme/x.y/jsonschema/1-0-0",
            "iglu:com.acme/x//1-0-0",
            "iglu:com.acme/x/jsonschema/0-1-0",
            "iglu:com.acme/x/jsonschema/1-01-0",
            "iglu:com.acme/x/jsonschema/1-0",
            "iglu:com.acme/x/jsonschema/1-0-0-0",
            "iglu:com.acme/x/jsonschema/1-0-x",
            "iglu:com.acme/x/jsonschema/1-0-99999999999",
        ];
        let messages: Vec<String> = cases
            .iter()
            .map(|uri| SchemaKey::parse(uri).unwrap_err().to_string())
            .collect();
        expect![[r#"
            invalid Iglu schema URI "com.acme/x/jsonschema/1-0-0": must start with `iglu:`
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema": expected four parts, vendor/name/format/version
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-0-0/extra": expected four parts, vendor/name/format/version
            invalid Iglu schema URI "iglu:com acme/x/jsonschema/1-0-0": vendor must be [a-zA-Z0-9-_.]+
            invalid Iglu schema URI "iglu:com.acme/x.y/jsonschema/1-0-0": name must be [a-zA-Z0-9-_]+
            invalid Iglu schema URI "iglu:com.acme/x//1-0-0": format must be [a-zA-Z0-9-_]+
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/0-1-0": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-01-0": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-0": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-0-0-0": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-0-x": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
            invalid Iglu schema URI "iglu:com.acme/x/jsonschema/1-0-99999999999": version must be MODEL-REVISION-ADDITION, MODEL ≥ 1, no leading zeros
        "#]]
        .assert_eq(&(messages.join("\n") + "\n"));
    }

    const UE: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/button_click/jsonschema/1-0-0","data":{"label":"Buy \"now\"\tplease","price":9.5}}}"#;
    const CO: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1"}},{"schema":"iglu:com.acme/user/jsonschema/2-1-0","data":{"name":"Zoë 東京 🚀"}}]}"#;

    #[test]
    fn unwraps_the_unstruct_envelope() {
        let event = parse_unstruct_event(UE.as_bytes()).unwrap();
        assert_eq!(
            event.schema.to_string(),
            "iglu:com.acme/button_click/jsonschema/1-0-0"
        );
        assert_eq!(event.data.to_value()["label"], "Buy \"now\"\tplease");
        assert_eq!(event.data.to_value()["price"], 9.5);
    }

    #[test]
    fn unwraps_the_contexts_envelope() {
        let entities = parse_contexts(CO.as_bytes()).unwrap();
        assert_eq!(entities.len(), 2);
        assert_eq!(entities[0].schema.name, "web_page");
        assert_eq!(entities[1].data.to_value()["name"], "Zoë 東京 🚀");
        let empty = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[]}"#;
        assert_eq!(parse_contexts(empty.as_bytes()).unwrap(), []);
    }

    #[test]
    fn envelope_errors_are_specific() {
        let cases: [(&str, bool); 8] = [
            (
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[}"#,
                true,
            ),
            (r#"[1,2]"#, true),
            (r#"{"data":[]}"#, true),
            (r#"{"schema":"not-iglu","data":[]}"#, true),
            (
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":[]}"#,
                true,
            ),
            (
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":{}}"#,
                true,
            ),
            (
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:a/b/c/1-0-0","data":1},{"name":"x"}]}"#,
                true,
            ),
            (
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":7,"data":{}}}"#,
                false,
            ),
        ];
        let messages: Vec<String> = cases
            .iter()
            .map(|(json, contexts)| {
                if *contexts {
                    parse_contexts(json.as_bytes()).unwrap_err().to_string()
                } else {
                    parse_unstruct_event(json.as_bytes())
                        .unwrap_err()
                        .to_string()
                }
            })
            .collect();
        expect![[r#"
            invalid JSON: expected value at line 1 column 83
            envelope is not self-describing JSON: expected a self-describing JSON object {"schema":…,"data":…}, found array
            envelope is not self-describing JSON: missing the "schema" key
            envelope is not self-describing JSON: invalid Iglu schema URI "not-iglu": must start with `iglu:`
            envelope schema is iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0, expected iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-*-*
            contexts envelope "data" must be an array, found object
            context entity 1 is not self-describing JSON: missing the "schema" key
            the unstruct event is not self-describing JSON: "schema" must be a string, found number
        "#]]
        .assert_eq(&(messages.join("\n") + "\n"));
    }

    /// The envelopes as trackers send them (compact, with whitespace, ASCII-only escapes,
    /// keys in any order) read by the fast path exactly as through a `Value`; anything unusual
    /// is left to the `Value` path.
    #[test]
    fn the_fast_path_reads_what_the_value_path_reads() {
        let spaced = r#" { "data" : [ { "data" : { "sku" : "B\u00f6\"t\"" , "price" : 99.50, "n" : [1, -0, 1E2] } , "schema" : "iglu:com.acme/productEntity/jsonschema/1-0-2" } ] ,
            "schema" : "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0" } "#;
        let empty = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[]}"#;
        for json in [CO, spaced, empty] {
            let fast = fast_contexts(json.as_bytes());
            assert!(fast.is_some(), "{json}");
            assert_eq!(fast, contexts_by_value(json.as_bytes()).ok(), "{json}");
        }
        let fast = fast_unstruct_event(UE.as_bytes());
        assert!(fast.is_some());
        assert_eq!(fast, unstruct_event_by_value(UE.as_bytes()).ok());

        let unusual = [
            // duplicate and extra keys, escaped keys, wrong envelope, trailing text, bad JSON
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[],"data":[]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[],"x":1}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:a/b/c/1-0-0","data":{"a":1,"a":2}}]}"#,
            r#"{"sch\u0065ma":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/2-0-0","data":[]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[]} x"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:a/b/c/1-0-0"}]}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":{}}"#,
            r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[}"#,
        ];
        for json in unusual {
            assert_eq!(fast_contexts(json.as_bytes()), None, "{json}");
        }
        assert_eq!(fast_contexts(b"{\"schema\":\"\xff\"}"), None);
    }

    #[test]
    fn envelope_schemas_are_checked_like_schema_keys() {
        for uri in [
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-12-0",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-01-0",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0-0",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0/x",
            "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/10-0-0",
            "iglu:com.snowplowanalytics.snowplow/contextsx/jsonschema/1-0-0",
            "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        ] {
            let by_key = SchemaKey::parse(uri)
                .is_ok_and(|key| key.matches(SNOWPLOW, "contexts", "jsonschema", 1));
            assert_eq!(is_envelope(uri, "contexts"), by_key, "{uri}");
        }
    }

    #[test]
    fn base64_accepts_both_alphabets_with_or_without_padding() {
        // Bytes chosen so the standard encoding contains both `+` and `/`.
        let bytes: &[u8] = b"\xfb\xff\xbe{\"k\":\"\xc3\xa9\"}";
        let standard = STANDARD.encode(bytes);
        assert!(standard.contains('+') && standard.contains('/') && standard.ends_with('='));
        let url_safe = URL_SAFE_NO_PAD.encode(bytes);
        for text in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe.clone(),
            format!("{url_safe}="),
            standard.replace('+', " "),
        ] {
            assert_eq!(decode_base64(&text).unwrap(), bytes, "{text}");
        }
        assert!(matches!(
            decode_base64("ab$d"),
            Err(PayloadError::Base64(_))
        ));
        assert!(matches!(decode_base64("a"), Err(PayloadError::Base64(_))));
        assert!(matches!(
            decode_base64("YQ==="),
            Err(PayloadError::Base64(_))
        ));
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
