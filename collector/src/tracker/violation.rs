//! What is wrong with a parameter: the messages of tracker-protocol and schema-violation bad rows.

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::iglu::{truncate, JsonType, PayloadError};

/// Values quoted in a [`Violation`] are cut to this many bytes (at a character boundary) and
/// marked with `…`; the bad row's payload keeps the whole input.
pub const VIOLATION_VALUE_MAX_BYTES: usize = 512;

/// Which family of Snowplow bad row a violation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationClass {
    /// The hit breaks the tracker protocol (`tracker_protocol_violations`).
    TrackerProtocol,
    /// A self-describing JSON payload is not valid JSON, not self-describing, or of the wrong
    /// schema (`schema_violations`).
    Schema,
}

/// One problem with one parameter: the parameter, the (truncated) value, what was expected.
///
/// Serializes as `{"field":…,"value":…,"expectation":…,"class":…}`, the shape of Snowplow's
/// `InputData` failure messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The tracker parameter, as sent (`eid`, `dtm`, …).
    pub param: String,
    /// Its value, truncated to [`VIOLATION_VALUE_MAX_BYTES`]; `None` when it is absent.
    pub value: Option<String>,
    /// What is wrong.
    pub kind: ViolationKind,
}

/// What is wrong with a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViolationKind {
    /// A required parameter is absent or empty.
    Missing {
        /// What should have been there.
        expected: &'static str,
    },
    /// The value does not follow the parameter's grammar.
    Invalid {
        /// The grammar, in words.
        expected: &'static str,
    },
    /// A tp2 value that is `null`, an array or an object rather than a string.
    NotAString {
        /// What it was.
        found: JsonType,
    },
    /// `ue_pr`/`ue_px`/`co`/`cx` could not be read.
    Payload(PayloadError),
    /// Warning: the key or value was not UTF-8; invalid bytes were replaced with U+FFFD.
    InvalidUtf8,
    /// Warning: a later occurrence of a key already present, ignored.
    Duplicate,
    /// Warning: a legacy or alternative spelling ignored because the preferred one is present.
    Superseded {
        /// The parameter used instead.
        by: &'static str,
    },
}

impl ViolationKind {
    /// The bad-row family this belongs to.
    pub fn class(&self) -> ViolationClass {
        match self {
            ViolationKind::Payload(error) if error.is_schema_violation() => ViolationClass::Schema,
            _ => ViolationClass::TrackerProtocol,
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViolationKind::Missing { expected } => write!(f, "missing: expected {expected}"),
            ViolationKind::Invalid { expected } => write!(f, "expected {expected}"),
            ViolationKind::NotAString { found } => {
                write!(
                    f,
                    "expected a string (or a number or boolean), found {found}"
                )
            }
            ViolationKind::Payload(error) => error.fmt(f),
            ViolationKind::InvalidUtf8 => {
                f.write_str("not valid UTF-8; invalid bytes replaced with U+FFFD")
            }
            ViolationKind::Duplicate => {
                f.write_str("duplicate parameter ignored; the first is kept")
            }
            ViolationKind::Superseded { by } => write!(f, "ignored in favour of {by}"),
        }
    }
}

impl Violation {
    /// A violation of `param`, quoting `value` (truncated).
    pub fn new(param: &str, value: Option<&str>, kind: ViolationKind) -> Violation {
        let value = value.map(|value| {
            let cut = truncate(value, VIOLATION_VALUE_MAX_BYTES);
            if cut.len() < value.len() {
                format!("{cut}…")
            } else {
                cut.to_owned()
            }
        });
        Violation {
            param: param.to_owned(),
            value,
            kind,
        }
    }

    /// The bad-row family this belongs to.
    pub fn class(&self) -> ViolationClass {
        self.kind.class()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={:?}: {}", self.param, value, self.kind),
            None => write!(f, "{}: {}", self.param, self.kind),
        }
    }
}

impl Serialize for Violation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Violation", 4)?;
        s.serialize_field("field", &self.param)?;
        s.serialize_field("value", &self.value)?;
        s.serialize_field("expectation", &self.kind.to_string())?;
        s.serialize_field("class", &self.class())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_truncated() {
        let long = "é".repeat(VIOLATION_VALUE_MAX_BYTES);
        let v = Violation::new("page", Some(&long), ViolationKind::InvalidUtf8);
        let value = v.value.unwrap();
        assert!(value.len() <= VIOLATION_VALUE_MAX_BYTES + '…'.len_utf8());
        assert!(value.ends_with("é…"));
    }

    #[test]
    fn serializes_like_input_data() {
        let v = Violation::new(
            "eid",
            Some("nope"),
            ViolationKind::Invalid { expected: "a UUID" },
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"field":"eid","value":"nope","expectation":"expected a UUID","class":"tracker_protocol"}"#
        );
        assert_eq!(v.to_string(), r#"eid="nope": expected a UUID"#);
    }
}
