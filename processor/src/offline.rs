//! `plow-processor enrich`: access-log lines from a reader, good events and bad rows to writers.
//!
//! The loop around [`process_line_with`]: buffered line reading, output batched into large
//! writes, counters. The processing time (`etl_tstamp`) is read from the given clock once per
//! [`CLOCK_EVERY_LINES`] lines, so a fixed clock makes a run reproducible.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use plowline_collector::logformat::LogFormat;

use crate::badrow::BadRowType;
use crate::output::OutputFormat;
use crate::pipeline::{process_line_with, Context, Enrich};

/// How often the clock is read, and progress reported.
pub const CLOCK_EVERY_LINES: u64 = 4096;

/// Output is written once this many bytes are buffered.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// What a run needs besides its input and outputs.
pub struct Options<'a> {
    /// The access-log format.
    pub log_format: &'a LogFormat,
    /// See [`crate::config::Config::max_line_bytes`].
    pub max_line_bytes: usize,
    /// How good events are written.
    pub output_format: OutputFormat,
    /// The enrichments.
    pub enrich: &'a dyn Enrich,
    /// The processing time, ms since the epoch.
    pub clock: &'a dyn Fn() -> i64,
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("log_format", &self.log_format.source())
            .field("max_line_bytes", &self.max_line_bytes)
            .field("output_format", &self.output_format)
            .finish_non_exhaustive()
    }
}

/// Tallies of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lines read.
    pub lines: u64,
    /// Bytes read, line breaks included.
    pub bytes: u64,
    /// Good events written.
    pub events: u64,
    /// Bad rows written, by type.
    pub bad_rows: BTreeMap<BadRowType, u64>,
}

impl Counters {
    /// All bad rows.
    pub fn bad_total(&self) -> u64 {
        self.bad_rows.values().sum()
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines, {} events, {} bad rows",
            self.lines,
            self.events,
            self.bad_total()
        )?;
        if !self.bad_rows.is_empty() {
            let parts: Vec<String> = self
                .bad_rows
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// An I/O failure that stops a run (bad input never does).
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Reading the input failed.
    #[error("cannot read the input after {lines} lines")]
    Read {
        /// Lines read before.
        lines: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing good events failed.
    #[error("cannot write good events")]
    WriteGood(#[source] io::Error),
    /// Writing bad rows failed.
    #[error("cannot write bad rows")]
    WriteBad(#[source] io::Error),
}

/// Appends the next line of `input` to `line`, with its `\n` if it has one, and returns how many
/// bytes it read (0 at the end): `BufRead::read_until`, with the `memchr` crate's vectorized
/// search instead of the standard library's word-at-a-time one, which shows on kilobyte lines.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let (used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), available.is_empty()),
        };
        line.extend_from_slice(&available[..used]);
        input.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

/// Enriches every line of `input`, writing good events to `good` and bad rows to `bad` (one
/// per line each). `progress` is called every [`CLOCK_EVERY_LINES`] lines and at the end.
pub fn enrich_stream(
    mut input: impl BufRead,
    good: &mut dyn Write,
    bad: &mut dyn Write,
    options: &Options<'_>,
    mut progress: impl FnMut(&Counters),
) -> Result<Counters, OfflineError> {
    let mut counters = Counters::default();
    let mut line = Vec::with_capacity(4096);
    let mut good_buf = Vec::with_capacity(WRITE_BATCH_BYTES + 64 * 1024);
    let mut bad_buf = Vec::new();
    let mut bad_rows = Vec::new();
    let mut ctx = Context {
        format: options.log_format,
        max_line_bytes: options.max_line_bytes,
        etl_tstamp_ms: (options.clock)(),
        enrich: options.enrich,
    };
    loop {
        line.clear();
        let n = read_line(&mut input, &mut line).map_err(|source| OfflineError::Read {
            lines: counters.lines,
            source,
        })?;
        if n == 0 {
            break;
        }
        counters.bytes += n as u64;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        counters.lines += 1;
        if counters.lines % CLOCK_EVERY_LINES == 0 {
            ctx.etl_tstamp_ms = (options.clock)();
            progress(&counters);
        }
        bad_rows.clear();
        // Each event is written as it comes: it borrows from `line`.
        process_line_with(&line, &ctx, &mut bad_rows, |event| {
            options.output_format.write_line(event, &mut good_buf);
            counters.events += 1;
        });
        for row in &bad_rows {
            row.write_line(&mut bad_buf);
            *counters.bad_rows.entry(row.kind).or_default() += 1;
        }
        if good_buf.len() >= WRITE_BATCH_BYTES {
            good.write_all(&good_buf).map_err(OfflineError::WriteGood)?;
            good_buf.clear();
        }
        if bad_buf.len() >= WRITE_BATCH_BYTES {
            bad.write_all(&bad_buf).map_err(OfflineError::WriteBad)?;
            bad_buf.clear();
        }
    }
    good.write_all(&good_buf)
        .and_then(|()| good.flush())
        .map_err(OfflineError::WriteGood)?;
    bad.write_all(&bad_buf)
        .and_then(|()| bad.flush())
        .map_err(OfflineError::WriteBad)?;
    progress(&counters);
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::NoEnrichments;

    fn line(uri: &str) -> Vec<u8> {
        let mut out = Vec::new();
        LogFormat::canonical().write_line(
            |var| match var {
                "msec" => Some(b"1700000000.123".as_slice()),
                "request_method" => Some(b"GET".as_slice()),
                "request_uri" => Some(uri.as_bytes()),
                "status" => Some(b"200".as_slice()),
                _ => None,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn every_line_gives_an_event_or_a_bad_row() {
        let mut input = Vec::new();
        input.extend(line("/i?e=pv&p=web&url=https%3A%2F%2Fa.example%2F"));
        input.extend(line("/i?e=se&p=web&se_ca=c&se_ac=a"));
        input.extend(line("/i?e=zz&p=web"));
        input.extend(line("/favicon.ico"));
        input.extend_from_slice(b"garbage\r\n");
        input.extend_from_slice(&[b'x'; 300]);
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        let options = Options {
            log_format: &LogFormat::canonical(),
            max_line_bytes: 256,
            output_format: OutputFormat::Json,
            enrich: &NoEnrichments,
            clock: &|| 1_700_000_001_000,
        };
        let counters = enrich_stream(&input[..], &mut good, &mut bad, &options, |_| {}).unwrap();
        assert_eq!(counters.lines, 6);
        assert_eq!(counters.events, 2);
        assert_eq!(counters.bad_total(), 4);
        assert_eq!(counters.bytes, input.len() as u64);
        assert_eq!(
            good.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            2
        );
        assert_eq!(
            bad.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
            4
        );
        for kind in [
            BadRowType::TrackerProtocolViolations,
            BadRowType::AdapterFailures,
            BadRowType::CollectorPayloadFormatViolation,
            BadRowType::SizeViolation,
        ] {
            assert_eq!(counters.bad_rows.get(&kind), Some(&1), "{kind}");
        }
        assert!(counters
            .to_string()
            .starts_with("6 lines, 2 events, 4 bad rows ("));
    }
}
