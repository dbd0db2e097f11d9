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

/// Writes timestamps as [`write_datetime`] does, remembering the dates of the last two days
/// written: the timestamps of an event mostly fall on two days (the processing time's, and the
/// day the tracker sent it), whose dates are then formatted once. Kept from event to event by the
/// writers (one per thread), so that the next events' dates are usually remembered too.
#[derive(Debug, Default)]
pub(crate) struct DateTimes {
    /// A day since the epoch and its `YYYY-MM-DD`, the most recent first; only days whose
    /// year has four digits.
    days: [Option<(i64, [u8; 10])>; 2],
}

impl DateTimes {
    /// Appends `YYYY-MM-DD<sep>HH:MM:SS.mmm`.
    pub(crate) fn write(&mut self, ms: i64, sep: u8, out: &mut Vec<u8>) {
        let day = ms.div_euclid(86_400_000);
        let date = match self.days {
            [Some((known, date)), _] | [_, Some((known, date))] if known == day => date,
            _ => {
                let Some(date) = four_digit_date(day) else {
                    return write_datetime(ms, sep, out);
                };
                self.days = [Some((day, date)), self.days[0]];
                date
            }
        };
        let mut text = *b"0000-00-00 00:00:00.000";
        text[..10].copy_from_slice(&date);
        text[10] = sep;
        write_time_of_day(ms.rem_euclid(86_400_000) as u32, &mut text);
        out.extend_from_slice(&text);
    }
}

/// `YYYY-MM-DD` of `day` since the epoch, when its year has four digits.
fn four_digit_date(day: i64) -> Option<[u8; 10]> {
    let (year, month, day_of_month) = civil_from_days(day);
    let year = u32::try_from(year).ok().filter(|year| *year <= 9999)?;
    Some(date_text(year, month, day_of_month))
}

/// `YYYY-MM-DD`, two digits at a time, of a year below 10,000.
fn date_text(year: u32, month: u32, day_of_month: u32) -> [u8; 10] {
    let mut date = *b"0000-00-00";
    for (at, value) in [
        (0, year / 100),
        (2, year % 100),
        (5, month),
        (8, day_of_month),
    ] {
        date[at..at + 2].copy_from_slice(&TWO_DIGITS[value as usize]);
    }
    date
}

/// Fills `HH:MM:SS.mmm` of `YYYY-MM-DD HH:MM:SS.mmm` with the time `ms` after midnight.
fn write_time_of_day(ms: u32, text: &mut [u8; 23]) {
    for (at, value) in [
        (11, ms / 3_600_000),
        (14, ms / 60_000 % 60),
        (17, ms / 1000 % 60),
        (21, ms % 100),
    ] {
        text[at..at + 2].copy_from_slice(&TWO_DIGITS[value as usize]);
    }
    text[20] = b'0' + (ms % 1000 / 100) as u8;
}

/// Appends `YYYY-MM-DD<sep>HH:MM:SS.mmm` (a year outside 0–9999 written as it is).
pub(crate) fn write_datetime(ms: i64, sep: u8, out: &mut Vec<u8>) {
    let (year, month, day) = civil_from_days(ms.div_euclid(86_400_000));
    // Formatted in a fixed buffer, two digits at a time, and appended at once.
    let mut text = *b"0000-00-00 00:00:00.000";
    text[10] = sep;
    let four_digit_year = u32::try_from(year).ok().filter(|year| *year <= 9999);
    text[..10].copy_from_slice(&date_text(four_digit_year.unwrap_or(0), month, day));
    write_time_of_day(ms.rem_euclid(86_400_000) as u32, &mut text);
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

    #[test]
    fn remembered_dates_write_what_write_datetime_writes() {
        let mut dates = DateTimes::default();
        for ms in [
            1_700_000_000_123,
            1_700_000_000_999,
            1_700_006_400_000,
            1_699_999_999_999,
            0,
            -1,
            253_402_300_800_000,
            1_700_000_000_123,
            0,
            1_700_006_400_000,
            0,
            1_700_000_000_123,
            1_700_006_400_000,
        ] {
            let (mut remembered, mut fresh) = (Vec::new(), Vec::new());
            dates.write(ms, b'T', &mut remembered);
            write_datetime(ms, b'T', &mut fresh);
            assert_eq!(remembered, fresh, "{ms}");
        }
    }
}
