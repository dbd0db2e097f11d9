//! Encoders for good events: JSON (the default, as Snowplow's Elasticsearch loader and analytics
//! SDKs shape it) and Snowplow's canonical 131-column TSV. Both append to a byte buffer.

pub mod json;
pub mod tsv;

use plowline_collector::civil::civil_from_days;
use serde::Deserialize;

use crate::EnrichedEvent;

/// How good events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One JSON object per line, contexts flattened (`contexts_<vendor>_<name>_<major>`).
    #[default]
    Json,
    /// Snowplow's enriched TSV: the 131 canonical columns.
    Tsv,
}

impl OutputFormat {
    /// Appends `event` in this format, with its line break, to `out`.
    pub fn write_line(self, event: &EnrichedEvent, out: &mut Vec<u8>) {
        match self {
            OutputFormat::Json => json::write_json_event(event, out),
            OutputFormat::Tsv => tsv::write_tsv_event(event, out),
        }
        out.push(b'\n');
    }
}

/// The civil date and time of `ms` since the Unix epoch (UTC):
/// `(year, month, day, hour, minute, second, millisecond)`.
pub(crate) fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    let in_day = ms.rem_euclid(86_400_000) as u32;
    (
        year,
        month,
        day,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    )
}

/// Appends `YYYY-MM-DD<sep>HH:MM:SS.mmm` (a year outside 0–9999 written as it is).
pub(crate) fn write_datetime(ms: i64, sep: u8, out: &mut Vec<u8>) {
    let (year, month, day, hour, minute, second, milli) = civil(ms);
    // Formatted in a fixed buffer and appended at once.
    let mut text = *b"0000-00-00 00:00:00.000";
    text[10] = sep;
    let four_digit_year = u32::try_from(year).ok().filter(|year| *year <= 9999);
    for (at, value, width) in [
        (0, four_digit_year.unwrap_or(0), 4),
        (5, month, 2),
        (8, day, 2),
        (11, hour, 2),
        (14, minute, 2),
        (17, second, 2),
        (20, milli, 3),
    ] {
        let mut value = value;
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    if four_digit_year.is_some() {
        out.extend_from_slice(&text);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(year).as_bytes());
        out.extend_from_slice(&text[4..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datetime(ms: i64) -> String {
        let mut out = Vec::new();
        write_datetime(ms, b' ', &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn datetimes_are_utc_with_millis() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00.000");
        assert_eq!(datetime(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(datetime(253_402_300_799_999), "9999-12-31 23:59:59.999");
        assert_eq!(datetime(-1), "1969-12-31 23:59:59.999");
        assert_eq!(datetime(253_402_300_800_000), "10000-01-01 00:00:00.000");
        assert_eq!(datetime(-62_167_219_200_001), "-1-12-31 23:59:59.999");
    }
}
