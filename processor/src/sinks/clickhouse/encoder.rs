//! Enriched events (the JSON documents of `tracker-enriched`) to rows of the events table.
//!
//! [`decode`] reads one document into an [`EventRow`] that borrows its strings from it; the row
//! serializes (serde) in [`COLUMNS`] order, as the `clickhouse` crate's RowBinary encoder expects.
//! A document that is not a readable enriched event is [`DecodeError::Unreadable`] with every
//! reason; one that is readable but does not fit the schema (a timestamp outside `DateTime`'s
//! range, 1970 to 2106) is [`DecodeError::Unstorable`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::value::RawValue;

use super::schema::{ColumnType, COLUMNS};
use crate::sinks::bad_rows::BadRowDoc;

/// The flattened keys of the entities that get columns of their own, and those columns:
/// (document key, entity field, column).
const EXTRACTED: [(&str, &str, &str); 8] = [
    (
        "contexts_com_snowplowanalytics_snowplow_web_page_1",
        "id",
        "web_page_id",
    ),
    (UA_PARSER, "useragentFamily", "ua_useragent_family"),
    (UA_PARSER, "useragentVersion", "ua_useragent_version"),
    (UA_PARSER, "osFamily", "ua_os_family"),
    (UA_PARSER, "osVersion", "ua_os_version"),
    (UA_PARSER, "deviceFamily", "ua_device_family"),
    (IAB, "category", "iab_category"),
    (IAB, "spiderOrRobot", "iab_spider_or_robot"),
];
const UA_PARSER: &str = "contexts_com_snowplowanalytics_snowplow_ua_parser_context_1";
const IAB: &str = "contexts_com_iab_snowplow_spiders_and_robots_1";

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i32),
    Float(f64),
    UInt8(u8),
    DateTime(u32),
    UInt16(u16),
}

/// A row of the events table, borrowing from the document it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow<'a> {
    values: Vec<Value<'a>>,
}

impl clickhouse::Row for EventRow<'_> {
    const COLUMN_NAMES: &'static [&'static str] = &super::schema::COLUMN_NAMES;
}

impl EventRow<'_> {
    /// The `event_id` (every decoded row has one).
    pub fn event_id(&self) -> &str {
        match &self.values[column("event_id")] {
            Value::Str(id) => id,
            _ => "",
        }
    }
}

/// A row of the bad-rows table (fields in [`super::schema::BAD_ROWS_COLUMNS`] order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRowRow {
    /// The schema URI.
    pub schema: String,
    /// The bad-row type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `data.failure.timestamp` (else the load time), seconds.
    pub failure_tstamp: u32,
    /// Its milliseconds.
    pub failure_tstamp_ms: u16,
    /// `data.processor.artifact`.
    pub processor_artifact: String,
    /// `data.processor.version`.
    pub processor_version: String,
    /// `data.failure` as JSON.
    pub failure: String,
    /// `data.payload` as text or JSON.
    pub payload: String,
    /// The SHA-256 of the document.
    pub row_id: String,
}

impl clickhouse::Row for BadRowRow {
    const COLUMN_NAMES: &'static [&'static str] = &super::schema::BAD_ROWS_COLUMN_NAMES;
}

impl BadRowRow {
    /// The row of `doc`; `now_ms` is the failure time when the document has none that
    /// `DateTime` can hold.
    pub fn new(doc: BadRowDoc, now_ms: i64) -> BadRowRow {
        let ms = doc
            .failure_tstamp_ms
            .filter(|ms| u32::try_from(ms.div_euclid(1000)).is_ok())
            .unwrap_or(now_ms);
        BadRowRow {
            schema: doc.schema,
            kind: doc.kind,
            failure_tstamp: u32::try_from(ms.div_euclid(1000)).unwrap_or(0),
            failure_tstamp_ms: ms.rem_euclid(1000) as u16,
            processor_artifact: doc.processor_artifact,
            processor_version: doc.processor_version,
            failure: doc.failure,
            payload: doc.payload,
            row_id: doc.row_id,
        }
    }
}

/// Why a document gives no row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a readable enriched event: every reason.
    Unreadable(Vec<String>),
    /// Readable, but a value does not fit the schema.
    Unstorable(String),
}

/// The index of the column named `name`. Panics on a name that is not a column (a bug).
fn column(name: &str) -> usize {
    columns()[name]
}

/// A map from column names, hashed with FNV-1a (short keys, looked up once per field of every
/// document: SipHash showed in profiles).
type NameMap = HashMap<&'static str, usize, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Column index by name, every column.
fn columns() -> &'static NameMap {
    static COLUMN_INDEX: OnceLock<NameMap> = OnceLock::new();
    COLUMN_INDEX.get_or_init(|| {
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name, i))
            .collect()
    })
}

/// Column index by name, of the columns that hold a field of the document as it is (not a `_ms`
/// part, an extracted column, or the entity groups).
fn atomic_columns() -> &'static NameMap {
    static ATOMIC_INDEX: OnceLock<NameMap> = OnceLock::new();
    ATOMIC_INDEX.get_or_init(|| {
        COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !matches!(
                    c.ty,
                    ColumnType::UInt16 | ColumnType::NullableUInt16 | ColumnType::Json
                ) && !EXTRACTED.iter().any(|(_, _, name)| *name == c.name)
            })
            .map(|(i, c)| (c.name, i))
            .collect()
    })
}

/// Reads `json` (one enriched event) into a row.
pub fn decode(json: &[u8]) -> Result<EventRow<'_>, DecodeError> {
    // Validated once as a whole, so that serde_json does not check each string again.
    let json = std::str::from_utf8(json)
        .map_err(|error| DecodeError::Unreadable(vec![format!("not UTF-8: {error}")]))?;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let mut state = Decoding {
        values: COLUMNS
            .iter()
            .map(|c| match c.ty {
                ColumnType::String => Value::Str(Cow::Borrowed("")),
                ColumnType::UInt16 => Value::UInt16(0),
                _ => Value::Null,
            })
            .collect(),
        contexts: String::from("{"),
        unstruct: String::from("{"),
        unreadable: Vec::new(),
        unstorable: Vec::new(),
    };
    let parsed = (&mut deserializer)
        .deserialize_map(DocVisitor(&mut state))
        .and_then(|()| deserializer.end());
    if let Err(error) = parsed {
        return Err(DecodeError::Unreadable(vec![format!(
            "not a JSON object: {error}"
        )]));
    }
    let Decoding {
        mut values,
        mut contexts,
        mut unstruct,
        mut unreadable,
        unstorable,
    } = state;
    if values[column("event_id")] == Value::Str(Cow::Borrowed(""))
        && !unreadable.iter().any(|r| r.starts_with("event_id"))
    {
        unreadable.push("no event_id".to_owned());
    }
    if values[column("collector_tstamp")] == Value::Null {
        unreadable.push("no collector_tstamp".to_owned());
    }
    if !unreadable.is_empty() {
        return Err(DecodeError::Unreadable(unreadable));
    }
    if !unstorable.is_empty() {
        return Err(DecodeError::Unstorable(unstorable.join("; ")));
    }
    contexts.push('}');
    unstruct.push('}');
    values[column("contexts")] = Value::Str(Cow::Owned(contexts));
    values[column("unstruct_event")] = Value::Str(Cow::Owned(unstruct));
    Ok(EventRow { values })
}

struct Decoding<'a> {
    values: Vec<Value<'a>>,
    /// The JSON object of the entity groups, being built (no closing brace yet).
    contexts: String,
    /// The JSON object of the unstruct event, being built.
    unstruct: String,
    unreadable: Vec<String>,
    unstorable: Vec<String>,
}

impl<'a> Decoding<'a> {
    fn atomic(&mut self, key: &str, index: usize, value: Scalar<'a>) {
        let ty = COLUMNS[index].ty;
        let decoded = match (ty, value) {
            (_, Scalar::Null) => Ok(Value::Null),
            (ColumnType::String | ColumnType::NullableString, Scalar::Str(s)) => {
                if key == "event_id" && !is_uuid(&s) {
                    Err(format!("event_id {s:?} is not a UUID"))
                } else {
                    Ok(Value::Str(s))
                }
            }
            (ColumnType::NullableInt32, Scalar::Int(n)) => i32::try_from(n)
                .map(Value::Int)
                .map_err(|_| format!("{key}: {n} is not a 32-bit integer")),
            (ColumnType::NullableFloat64, Scalar::Int(n)) => Ok(Value::Float(n as f64)),
            (ColumnType::NullableFloat64, Scalar::Float(f)) => Ok(Value::Float(f)),
            (ColumnType::NullableUInt8, Scalar::Bool(b)) => Ok(Value::UInt8(u8::from(b))),
            (ColumnType::DateTime | ColumnType::NullableDateTime, Scalar::Str(s)) => {
                match parse_iso8601_ms(&s) {
                    Some(ms) => {
                        let seconds = ms.div_euclid(1000);
                        let millis = ms.rem_euclid(1000) as u16;
                        match u32::try_from(seconds) {
                            Ok(seconds) => {
                                self.values[index + 1] = Value::UInt16(millis);
                                Ok(Value::DateTime(seconds))
                            }
                            Err(_) => {
                                self.unstorable.push(format!(
                                    "{key} {s} is outside ClickHouse DateTime's range \
                                     (1970-01-01 to 2106-02-07)"
                                ));
                                return;
                            }
                        }
                    }
                    None => Err(format!("{key}: {s:?} is not an ISO 8601 UTC timestamp")),
                }
            }
            (_, other) => Err(format!(
                "{key}: expected {}, got {}",
                ty.sql(),
                other.describe()
            )),
        };
        match decoded {
            Ok(value) => self.values[index] = value,
            Err(reason) => self.unreadable.push(reason),
        }
    }

    fn entity_group(&mut self, key: &str, raw: &'a RawValue, unstruct: bool) {
        let target = if unstruct {
            &mut self.unstruct
        } else {
            &mut self.contexts
        };
        if target.len() > 1 {
            target.push(',');
        }
        target.push('"');
        target.push_str(key);
        target.push_str("\":");
        target.push_str(raw.get());
        if unstruct {
            return;
        }
        if !EXTRACTED.iter().any(|(group, _, _)| *group == key) {
            return;
        }
        let seed = EntityGroup {
            group: key,
            values: &mut self.values,
        };
        let mut deserializer = serde_json::Deserializer::from_str(raw.get());
        if seed.deserialize(&mut deserializer).is_err() {
            self.unreadable
                .push(format!("{key}: expected an array of objects"));
        }
    }
}

/// Reads an entity group (a JSON array of objects) into the [`EXTRACTED`] columns of `values`:
/// the first entity's fields, a string or a boolean as the column's type wants, anything else
/// `NULL`. The rest is checked to be objects and skipped, without building any value.
struct EntityGroup<'s, 'a> {
    /// The group's flattened key.
    group: &'s str,
    values: &'s mut [Value<'a>],
}

impl<'de> DeserializeSeed<'de> for EntityGroup<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntityGroup<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut first = Some(self.values);
        let group = self.group;
        while seq
            .next_element_seed(Entity {
                group,
                values: first.take(),
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One entity (a JSON object); its extracted fields go into `values` when given.
struct Entity<'s, 'a> {
    group: &'s str,
    values: Option<&'s mut [Value<'a>]>,
}

impl<'de> DeserializeSeed<'de> for Entity<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entity<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(values) = self.values else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        for (group, _, name) in &EXTRACTED {
            if *group == self.group {
                values[column(name)] = Value::Null;
            }
        }
        while let Some(Key(field)) = map.next_key::<Key<'de>>()? {
            let extracted = EXTRACTED
                .iter()
                .find(|(group, f, _)| *group == self.group && *f == field);
            let Some((_, _, name)) = extracted else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let index = column(name);
            values[index] = match (COLUMNS[index].ty, map.next_value::<Scalar<'de>>()?) {
                (ColumnType::NullableString, Scalar::Str(s)) => Value::Str(s),
                (ColumnType::NullableUInt8, Scalar::Bool(b)) => Value::UInt8(u8::from(b)),
                _ => Value::Null,
            };
        }
        Ok(())
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (the processor's form; 1 to 9 fraction digits) as ms since the
/// epoch.
pub(crate) fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0_i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let millis = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let mut ms = 0;
            for i in 0..3 {
                let d = fraction.get(i).copied().unwrap_or(b'0');
                if !d.is_ascii_digit() {
                    return None;
                }
                ms = ms * 10 + i64::from(d - b'0');
            }
            if !fraction.iter().all(u8::is_ascii_digit) {
                return None;
            }
            ms
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Any JSON value of an atomic field, kept so that a wrong type is a reason, not a stop.
enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Other(&'static str),
}

impl Scalar<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Str(_) => "a string",
            Scalar::Int(_) | Scalar::Float(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Other(what) => what,
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// A key, borrowed from the document unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(ScalarVisitor)
            .and_then(|scalar| match scalar {
                Scalar::Str(s) => Ok(Key(s)),
                _ => Err(de::Error::custom("a key must be a string")),
            })
    }
}

struct DocVisitor<'s, 'a>(&'s mut Decoding<'a>);

impl<'de> Visitor<'de> for DocVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enriched event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let index = atomic_columns();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key.starts_with("contexts_") {
                let raw: &'de RawValue = map.next_value()?;
                state.entity_group(&key, raw, false);
            } else if key.starts_with("unstruct_event_") {
                let raw: &'de RawValue = map.next_value()?;
                state.entity_group(&key, raw, true);
            } else if key == "geo_location" {
                // `"lat,lon"`, the same values as geo_latitude and geo_longitude.
                map.next_value::<IgnoredAny>()?;
            } else {
                let value = map.next_value_seed(ScalarSeed)?;
                match index.get(&*key) {
                    Some(&i) => state.atomic(&key, i, value),
                    None => state.unreadable.push(format!("unknown field {key:?}")),
                }
            }
        }
        Ok(())
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl Serialize for EventRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut row = serializer.serialize_struct("EventRow", COLUMNS.len())?;
        for (column, value) in COLUMNS.iter().zip(&self.values) {
            let nullable = column.ty.sql().starts_with("Nullable");
            let name = column.name;
            match (nullable, value) {
                (true, Value::Null) => row.serialize_field(name, &None::<u8>)?,
                (true, value) => row.serialize_field(name, &Some(Plain(value)))?,
                (false, value) => row.serialize_field(name, &Plain(value))?,
            }
        }
        row.end()
    }
}

/// A value without its `Nullable` wrapper.
struct Plain<'v, 'a>(&'v Value<'a>);

impl Serialize for Plain<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // Only nullable columns hold Null, and those are wrapped above.
            Value::Null => serializer.serialize_none(),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Int(n) => serializer.serialize_i32(*n),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::UInt8(n) => serializer.serialize_u8(*n),
            Value::DateTime(s) => serializer.serialize_u32(*s),
            Value::UInt16(n) => serializer.serialize_u16(*n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"app_id":"shop","platform":"web","etl_tstamp":"2023-11-14T22:15:00.000Z","collector_tstamp":"2023-11-14T22:13:20.123Z","event":"page_view","event_id":"c6ef3124-b53a-4b13-a233-0088f79dcbcb","domain_sessionidx":3,"geo_latitude":51.5,"geo_longitude":-0.12,"geo_location":"51.5,-0.12","br_cookies":true,"page_title":"Zo\u00eb","contexts_com_snowplowanalytics_snowplow_web_page_1":[{"id":"a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b"}],"contexts_com_acme_product_entity_1":[{"sku":"B"}],"unstruct_event_com_acme_button_click_2":{"id":"buy"}}"#;

    fn value<'r>(row: &'r EventRow<'_>, name: &str) -> &'r Value<'r> {
        &row.values[column(name)]
    }

    #[test]
    fn decodes_typed_columns_entities_and_extracted_fields() {
        let row = decode(DOC.as_bytes()).unwrap();
        assert_eq!(row.event_id(), "c6ef3124-b53a-4b13-a233-0088f79dcbcb");
        assert_eq!(
            value(&row, "collector_tstamp"),
            &Value::DateTime(1_700_000_000)
        );
        assert_eq!(value(&row, "collector_tstamp_ms"), &Value::UInt16(123));
        assert_eq!(value(&row, "domain_sessionidx"), &Value::Int(3));
        assert_eq!(value(&row, "geo_latitude"), &Value::Float(51.5));
        assert_eq!(value(&row, "br_cookies"), &Value::UInt8(1));
        assert_eq!(value(&row, "page_title"), &Value::Str("Zoë".into()));
        assert_eq!(value(&row, "user_id"), &Value::Null);
        assert_eq!(
            value(&row, "web_page_id"),
            &Value::Str("a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b".into())
        );
        let Value::Str(contexts) = value(&row, "contexts") else {
            panic!()
        };
        let contexts: serde_json::Value = serde_json::from_str(contexts).unwrap();
        assert_eq!(
            contexts["contexts_com_acme_product_entity_1"][0]["sku"],
            "B"
        );
        let Value::Str(unstruct) = value(&row, "unstruct_event") else {
            panic!()
        };
        assert_eq!(
            unstruct,
            r#"{"unstruct_event_com_acme_button_click_2":{"id":"buy"}}"#
        );
        // Serializes: every column once.
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json.as_object().unwrap().len(), COLUMNS.len());
    }

    #[test]
    fn unreadable_documents_say_why() {
        let Err(DecodeError::Unreadable(why)) = decode(b"not json") else {
            panic!()
        };
        assert!(why[0].starts_with("not a JSON object"), "{why:?}");
        let doc = r#"{"event_id":"nope","collector_tstamp":"2023-11-14T22:13:20.123Z","txn_id":"x","surprise":1}"#;
        let Err(DecodeError::Unreadable(why)) = decode(doc.as_bytes()) else {
            panic!()
        };
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why.iter().any(|w| w.contains("not a UUID")));
        assert!(why.iter().any(|w| w.contains("txn_id")));
        assert!(why.iter().any(|w| w.contains("surprise")));
        let Err(DecodeError::Unreadable(why)) = decode(b"{}") else {
            panic!()
        };
        assert_eq!(why, ["no event_id", "no collector_tstamp"]);
    }

    #[test]
    fn extracted_columns_come_from_the_first_entity_and_fit_their_type() {
        let ua = r#""contexts_com_snowplowanalytics_snowplow_ua_parser_context_1":[{"useragentFamily":"Fire\u0066ox","osFamily":7,"extra":{"deep":[1,{"x":null}]}},{"useragentFamily":"Chrome"}]"#;
        let iab = r#""contexts_com_iab_snowplow_spiders_and_robots_1":[{"spiderOrRobot":true,"category":"BROWSER"}]"#;
        let doc = DOC.replacen('{', &format!("{{{ua},{iab},"), 1);
        let row = decode(doc.as_bytes()).unwrap();
        assert_eq!(
            value(&row, "ua_useragent_family"),
            &Value::Str("Firefox".into())
        );
        assert_eq!(value(&row, "ua_os_family"), &Value::Null, "not a string");
        assert_eq!(value(&row, "ua_os_version"), &Value::Null, "absent");
        assert_eq!(value(&row, "iab_spider_or_robot"), &Value::UInt8(1));
        assert_eq!(value(&row, "iab_category"), &Value::Str("BROWSER".into()));
        // Every entity must be an object, not only the first.
        let doc = DOC.replacen(
            '{',
            r#"{"contexts_com_iab_snowplow_spiders_and_robots_1":[{"category":"x"},2],"#,
            1,
        );
        let Err(DecodeError::Unreadable(why)) = decode(doc.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            why,
            ["contexts_com_iab_snowplow_spiders_and_robots_1: expected an array of objects"]
        );
    }

    #[test]
    fn timestamps_outside_datetime_are_unstorable() {
        let doc = DOC.replace(
            "\"etl_tstamp\":\"2023-11-14T22:15:00.000Z\"",
            "\"etl_tstamp\":\"2200-01-01T00:00:00.000Z\"",
        );
        let Err(DecodeError::Unstorable(why)) = decode(doc.as_bytes()) else {
            panic!()
        };
        assert!(why.contains("etl_tstamp 2200-01-01"), "{why}");
    }

    #[test]
    fn parses_iso8601() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_iso8601_ms("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_iso8601_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_iso8601_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(parse_iso8601_ms("2023-11-14 22:13:20Z"), None);
        assert_eq!(parse_iso8601_ms("2023-13-14T22:13:20Z"), None);
    }
}
