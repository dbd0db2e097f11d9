//! The processor's entry point: any bytes as an access-log line, through parsing, the tracker
//! protocol, the enrichments (built-in data) and both outputs. It must never panic, and every line
//! must come out as at least one good event or bad row.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plowline_collector::logformat::LogFormat;
use plowline_processor::enrichments::{Enrichments, EnrichmentsConfig};
use plowline_processor::output::OutputFormat;
use plowline_processor::pipeline::{process_line, Context};

fn enrichments() -> &'static Enrichments {
    static ENRICHMENTS: OnceLock<Enrichments> = OnceLock::new();
    ENRICHMENTS.get_or_init(|| Enrichments::new(&EnrichmentsConfig::default()).unwrap())
}

fuzz_target!(|line: &[u8]| {
    let format = LogFormat::canonical();
    let ctx = Context {
        format: &format,
        max_line_bytes: 1 << 20,
        etl_tstamp_ms: 1_800_000_000_000,
        enrich: enrichments(),
    };
    let outcome = process_line(line, &ctx);
    assert!(!outcome.events.is_empty() || !outcome.bad_rows.is_empty());
    let mut out = Vec::new();
    for event in &outcome.events {
        OutputFormat::Json.write_line(event, &mut out);
        OutputFormat::Tsv.write_line(event, &mut out);
    }
    for bad in &outcome.bad_rows {
        bad.write_line(&mut out);
    }
});
