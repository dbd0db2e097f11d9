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

/// `TWO_DIGITS[n]`: `n` (below 100) as two decimal digits.
const TWO_DIGITS: [[u8; 2]; 100] = {
    let mut table = [[0; 2]; 100];
    let mut n = 0;
    while n < 100 {
        table[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    table
};

/// Appends `YYYY-MM-DD<sep>HH:MM:SS.mmm` (a year outside 0–9999 written as it is).
pub(crate) fn write_datetime(ms: i64, sep: u8, out: &mut Vec<u8>) {
    let (year, month, day, hour, minute, second, milli) = civil(ms);
    // Formatted in a fixed buffer, two digits at a time, and appended at once.
    let mut text = *b"0000-00-00 00:00:00.000";
    text[10] = sep;
    let four_digit_year = u32::try_from(year).ok().filter(|year| *year <= 9999);
    let year_digits = four_digit_year.unwrap_or(0);
    for (at, value) in [
        (0, year_digits / 100),
        (2, year_digits % 100),
        (5, month),
        (8, day),
        (11, hour),
        (14, minute),
        (17, second),
        (21, milli % 100),
    ] {
        text[at..at + 2].copy_from_slice(&TWO_DIGITS[value as usize]);
    }
    text[20] = b'0' + (milli / 100) as u8;
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
