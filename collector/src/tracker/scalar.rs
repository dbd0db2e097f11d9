//! Scalar parameter grammars: UUIDs, timestamps, integers, decimals, dimensions, flags.

use std::fmt;

use serde::{Serialize, Serializer};

/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z in ms since the epoch.
pub(crate) const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// A UUID (`eid`, `sid`), stored as its 16 bytes.
///
/// Parsed from the 8-4-4-4-12 hex form in either case; displays and serializes lower-case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid([u8; 16]);

impl Uuid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, either case). Any other form
    /// (braces, `urn:uuid:`, no hyphens) is rejected. Versions and variants are not checked:
    /// trackers send v4, but an event id only has to be unique.
    pub fn parse(text: &str) -> Option<Uuid> {
        /// Where the two hex digits of each byte start in the 8-4-4-4-12 form.
        const DIGITS_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let text: &[u8; 36] = text.as_bytes().try_into().ok()?;
        if [8, 13, 18, 23].into_iter().any(|i| text[i] != b'-') {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, at) in bytes.iter_mut().zip(DIGITS_AT) {
            *byte = crate::hex::pair(text[at], text[at + 1])?;
        }
        Some(Uuid(bytes))
    }

    /// The UUID with these 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Uuid {
        Uuid(bytes)
    }

    /// The 16 bytes, most significant first.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl Serialize for Uuid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A decimal amount (`se_va`, `tr_tt`, `tr_tx`, `tr_sh`, `ti_pr`), kept as the exact text sent.
///
/// The text is validated: `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?` and finite as an `f64`.
/// Serializes as that text (a JSON string), so no precision is lost on the way to the sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal<'a>(&'a str);

impl<'a> Decimal<'a> {
    /// Validates `text` as a decimal.
    pub fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let bytes = text.as_bytes();
        let mut i = usize::from(bytes.first() == Some(&b'-'));
        let digits = |i: &mut usize| {
            let start = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > start
        };
        if !digits(&mut i) {
            return None;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        let finite = text.parse::<f64>().is_ok_and(f64::is_finite);
        (i == bytes.len() && finite).then_some(Decimal(text))
    }

    /// The text as sent.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The nearest `f64`.
    pub fn to_f64(&self) -> f64 {
        // Validated as a finite f64 in `parse`.
        self.0.parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Decimal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Decimal<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

/// A width and a height in pixels (`res`, `vp`, `ds`), sent as `WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Dimensions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Dimensions {
    /// Parses `WxH`: two unsigned integers, each at most `i32::MAX`, joined by a lower-case `x`.
    pub fn parse(text: &str) -> Option<Dimensions> {
        let (width, height) = split_once_byte(text, b'x')?;
        Some(Dimensions {
            width: parse_unsigned(width)?,
            height: parse_unsigned(height)?,
        })
    }
}

/// Milliseconds since the epoch: digits with an optional `.digits` fraction (truncated), in
/// `0..=MAX_TIMESTAMP_MS`.
pub(crate) fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let whole = match split_once_byte(text, b'.') {
        Some((whole, fraction)) => {
            let digits = !fraction.is_empty() && fraction.bytes().all(|b| b.is_ascii_digit());
            if !digits {
                return None;
            }
            whole
        }
        None => text,
    };
    let ms = digits_value(whole).filter(|ms| *ms <= MAX_TIMESTAMP_MS as u64)?;
    i64::try_from(ms).ok()
}

/// A non-negative integer: digits only, at most `i32::MAX`.
pub(crate) fn parse_unsigned(text: &str) -> Option<u32> {
    let n = digits_value(text).filter(|n| *n <= i32::MAX as u64)?;
    u32::try_from(n).ok()
}

/// A signed integer: an optional `-` then digits, fitting an `i32`.
pub(crate) fn parse_signed(text: &str) -> Option<i32> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let n = i64::try_from(digits_value(digits)?).ok()?;
    i32::try_from(if negative { -n } else { n }).ok()
}

/// `text` split at its first `sep`, an ASCII byte. A plain scan: these values are a few bytes
/// long, shorter than a search call's set-up.
fn split_once_byte(text: &str, sep: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == sep)?;
    Some((&text[..at], &text[at + 1..]))
}

/// The value of a non-empty run of ASCII digits (leading zeros allowed); `None` for anything
/// else, or past `u64::MAX`. One pass, where checking the digits and then calling `str::parse`
/// read the text twice (these are short: a pass's fixed cost is most of it).
fn digits_value(text: &str) -> Option<u64> {
    /// Nineteen digits stay below `u64::MAX`.
    const NO_OVERFLOW: usize = 19;
    if text.is_empty() {
        return None;
    }
    if text.len() <= NO_OVERFLOW {
        // No overflow to check, and whether every byte was a digit checked once at the end:
        // no branch per digit.
        let (n, all_digits) = text.bytes().fold((0u64, true), |(n, all_digits), b| {
            let digit = b.wrapping_sub(b'0');
            // Wraps only when a byte is no digit, and then the value is not used.
            let n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
            (n, all_digits & (digit <= 9))
        });
        return all_digits.then_some(n);
    }
    text.bytes().try_fold(0u64, |n, b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `1` or `0`.
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    match text {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        let id = Uuid::parse("0BD0C5F0-6d1e-4fca-8f31-4bdcb6c2c1d1").unwrap();
        assert_eq!(id.to_string(), "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1");
        assert_eq!(id.as_bytes()[0], 0x0b);
        assert_eq!(Uuid::from_bytes(*id.as_bytes()), id);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#""0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1""#
        );
        for bad in [
            "",
            "0bd0c5f06d1e4fca8f314bdcb6c2c1d1",
            "{0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1}",
            "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1dg",
            "0bd0c5f0-6d1e4-fca-8f31-4bdcb6c2c1d1",
            "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1 ",
            "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1\u{e9}",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn digits_read_as_the_standard_parser_reads_them(text in "[0-9]{0,24}|[0-9+a/: -]{0,8}") {
            let standard = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<u64>().ok())
                .flatten();
            proptest::prop_assert_eq!(digits_value(&text), standard);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            parse_timestamp_ms("1700000000123.987"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_timestamp_ms("0"), Some(0));
        assert_eq!(
            parse_timestamp_ms("0001700000000123.98765432109876543210987"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_timestamp_ms("253402300799999"),
            Some(MAX_TIMESTAMP_MS)
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.",
            ".5",
            "1e12",
            "17000000001230000000000",
            "253402300800000",
            "12a",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_unsigned("24"), Some(24));
        assert_eq!(parse_unsigned("2147483647"), Some(i32::MAX as u32));
        assert_eq!(parse_unsigned("2147483648"), None);
        assert_eq!(parse_unsigned("-1"), None);
        assert_eq!(parse_unsigned("+1"), None);
        assert_eq!(parse_signed("-40"), Some(-40));
        assert_eq!(parse_signed("-2147483648"), Some(i32::MIN));
        assert_eq!(parse_signed("-"), None);
        assert_eq!(parse_signed("1.5"), None);
        assert_eq!(parse_signed("-2147483649"), None);
        assert_eq!(parse_signed("2147483648"), None);
        assert_eq!(parse_signed("-18446744073709551616"), None);
        assert_eq!(parse_unsigned("000000000000000000000000024"), Some(24));
        assert_eq!(parse_unsigned("18446744073709551616"), None);
    }

    #[test]
    fn decimals_keep_their_text() {
        for good in ["0", "-0.5", "12.3400", "1e3", "2.5E-7", "007"] {
            assert_eq!(Decimal::parse(good).map(|d| d.as_str()), Some(good));
        }
        assert_eq!(Decimal::parse("12.5").unwrap().to_f64(), 12.5);
        for bad in [
            "", "-", "1.", ".5", "+1", "1e", "1e+", "NaN", "inf", "1e999", "0x10", "1,5", "1 ",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dimensions() {
        assert_eq!(
            Dimensions::parse("1920x1080"),
            Some(Dimensions {
                width: 1920,
                height: 1080
            })
        );
        for bad in [
            "1920X1080",
            "1920x",
            "x1080",
            "1920x1080x1",
            "-1x2",
            "1.5x2",
            "",
        ] {
            assert_eq!(Dimensions::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag("1"), Some(true));
        assert_eq!(parse_flag("0"), Some(false));
        assert_eq!(parse_flag("true"), None);
    }
}
