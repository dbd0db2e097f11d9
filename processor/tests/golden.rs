//! Golden tests of whole events: each `test_data/{ok,err}/NAME.log` (canonical access-log lines,
//! written by `test_data/gen.py`; nginx `combined` lines when NAME starts with `combined`) is enriched with a fixed processing time and no enrichments,
//! and compared with `NAME.json` (good events, as written), `NAME.tsv` and `NAME.bad.json` (bad
//! rows, pretty-printed). `ok/` inputs must give no bad rows, `err/` inputs no good events.
//!
//! Bless changes with `UPDATE_EXPECT=1 cargo test -p plowline-processor --test golden`.

use std::fs;
use std::path::{Path, PathBuf};

use plowline_collector::logformat::LogFormat;
use plowline_processor::output::OutputFormat;
use plowline_processor::pipeline::{process_line, Context, NoEnrichments};

/// 2023-11-14T22:15:00Z: the fixed `etl_tstamp`.
const ETL_TSTAMP_MS: i64 = 1_700_000_100_000;

struct Outputs {
    json: String,
    tsv: String,
    bad: String,
    events: usize,
    bad_rows: usize,
    lines: usize,
}

fn enrich(input: &[u8], format: &LogFormat) -> Outputs {
    let ctx = Context {
        format,
        max_line_bytes: 64 * 1024,
        etl_tstamp_ms: ETL_TSTAMP_MS,
        enrich: &NoEnrichments,
    };
    let (mut json, mut tsv, mut bad) = (Vec::new(), Vec::new(), String::new());
    let (mut events, mut bad_rows, mut lines) = (0, 0, 0);
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        let outcome = process_line(line, &ctx);
        assert!(
            !outcome.events.is_empty() || !outcome.bad_rows.is_empty(),
            "a line gave nothing"
        );
        for event in &outcome.events {
            OutputFormat::Json.write_line(event, &mut json);
            OutputFormat::Tsv.write_line(event, &mut tsv);
        }
        for row in &outcome.bad_rows {
            bad.push_str(&serde_json::to_string_pretty(&row.to_value()).unwrap());
            bad.push('\n');
        }
        events += outcome.events.len();
        bad_rows += outcome.bad_rows.len();
    }
    Outputs {
        json: String::from_utf8(json).unwrap(),
        tsv: String::from_utf8(tsv).unwrap(),
        bad,
        events,
        bad_rows,
        lines,
    }
}

fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        if actual.is_empty() {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, actual).unwrap();
        }
        return;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        failures.push(format!(
            "{} differs from line {} (bless with UPDATE_EXPECT=1):\n  expected: {}\n  actual:   {}",
            path.display(),
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        ));
    }
}

fn logs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(dir);
    let mut logs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no .log files in {}", dir.display());
    logs
}

fn run(dir: &str, good: bool) {
    let mut failures = Vec::new();
    for log in logs(dir) {
        let stem = log.file_stem().unwrap().to_string_lossy();
        let format = if stem.starts_with("combined") {
            LogFormat::combined()
        } else {
            LogFormat::canonical()
        };
        let out = enrich(&fs::read(&log).unwrap(), &format);
        if good {
            assert_eq!(out.bad_rows, 0, "{}: {}", log.display(), out.bad);
            assert!(out.events >= out.lines, "{}", log.display());
        } else {
            assert_eq!(out.events, 0, "{}: {}", log.display(), out.json);
            assert!(out.bad_rows >= out.lines, "{}", log.display());
        }
        check(&log.with_extension("json"), &out.json, &mut failures);
        check(&log.with_extension("tsv"), &out.tsv, &mut failures);
        check(&log.with_extension("bad.json"), &out.bad, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ok() {
    run("ok", true);
}

#[test]
fn err() {
    run("err", false);
}
