//! Black-box tests of the access-log format: golden files, huge lines, and round trips.
//!
//! Golden files live in `test_data/ok/*.log` (every line parses and makes a hit) and
//! `test_data/err/*.log` (every line fails, to parse or to make a hit). The first line of a file
//! may be `# format: SPEC` with a [`LogFormat::from_spec`] spec (`canonical` when absent). The
//! expected output is the `.txt` file beside it; `UPDATE_EXPECT=1 cargo test` rewrites them.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use expect_test::{expect, expect_file};
use plowline_collector::logformat::{Escape, Hit, LogFormat, Record};
use proptest::prelude::*;

/// Bytes as a Rust-style string literal; bytes that are not UTF-8 as `\xHH`.
fn show(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().flat_map(char::escape_debug));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

fn show_value(value: Option<&Cow<'_, [u8]>>) -> String {
    value.map_or_else(|| "(not set)".to_owned(), |v| show(v))
}

fn show_record(record: &Record<'_>, out: &mut String) {
    for (name, value) in record.iter() {
        let _ = writeln!(out, "  ${name} = {}", show_value(value.as_ref()));
    }
}

fn show_hit(hit: &Hit<'_>, out: &mut String) {
    let text = [
        ("method", Some(&hit.method)),
        ("uri", Some(&hit.uri)),
        ("remote_addr", hit.remote_addr.as_ref()),
        ("x_forwarded_for", hit.x_forwarded_for.as_ref()),
        ("host", hit.host.as_ref()),
        ("referer", hit.referer.as_ref()),
        ("user_agent", hit.user_agent.as_ref()),
        ("uid_got", hit.uid_got.as_ref()),
        ("uid_set", hit.uid_set.as_ref()),
        ("request_id", hit.request_id.as_ref()),
        ("body", hit.body.as_ref()),
        ("cookie", hit.cookie.as_ref()),
    ];
    let _ = writeln!(out, "  hit:");
    let _ = writeln!(out, "    collector_tstamp_ms = {}", hit.collector_tstamp_ms);
    let _ = writeln!(out, "    status = {:?}", hit.status);
    for (name, value) in text {
        let _ = writeln!(out, "    {name} = {}", show_value(value));
    }
}

/// Splits a golden file into its format spec and its lines (each with its line ending), numbered
/// as in the file.
fn golden_file(path: &Path) -> (LogFormat, Vec<(usize, Vec<u8>)>) {
    let content = std::fs::read(path).unwrap();
    let mut lines: Vec<(usize, Vec<u8>)> = content
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.to_vec()))
        .collect();
    let mut spec = "canonical".to_owned();
    if let Some((_, first)) = lines.first() {
        if let Some(rest) = first.strip_prefix(b"# format: ") {
            spec = String::from_utf8(rest.to_vec())
                .unwrap()
                .trim_end()
                .to_owned();
            lines.remove(0);
        }
    }
    let format = LogFormat::from_spec(&spec)
        .unwrap_or_else(|e| panic!("{}: bad format spec {spec:?}: {e}", path.display()));
    (format, lines)
}

fn golden_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no golden files in {}", dir.display());
    paths
}

fn header(format: &LogFormat) -> String {
    let variables: Vec<&str> = format.variables().collect();
    format!("format: {format}\nvariables: {}\n", variables.join(" "))
}

#[test]
fn golden_ok() {
    for path in golden_files("ok") {
        let (format, lines) = golden_file(&path);
        let mut out = header(&format);
        for (n, line) in lines {
            let record = format.parse(&line).unwrap_or_else(|e| {
                panic!("{}:{n}: expected to parse: {e}", path.display());
            });
            let _ = writeln!(out, "\nline {n}:");
            show_record(&record, &mut out);
            match record.hit() {
                Ok(hit) => show_hit(&hit, &mut out),
                Err(e) => panic!("{}:{n}: expected a hit: {e}", path.display()),
            }
        }
        expect_file![path.with_extension("txt")].assert_eq(&out);
    }
}

#[test]
fn golden_err() {
    for path in golden_files("err") {
        let (format, lines) = golden_file(&path);
        let mut out = header(&format);
        for (n, line) in lines {
            let _ = write!(out, "\nline {n}: ");
            match format.parse(&line) {
                Err(e) => {
                    let _ = writeln!(out, "parse error: {e}");
                }
                Ok(record) => match record.hit() {
                    Err(e) => {
                        let _ = writeln!(out, "hit error: {e}");
                    }
                    Ok(_) => panic!("{}:{n}: expected an error", path.display()),
                },
            }
        }
        expect_file![path.with_extension("txt")].assert_eq(&out);
    }
}

/// A canonical line whose User-Agent is `ua_len` bytes.
fn canonical_line(ua: &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    LogFormat::canonical().write_line(
        |var| match var {
            "msec" => Some(&b"1700000000.123"[..]),
            "remote_addr" => Some(b"203.0.113.7"),
            "request_method" => Some(b"GET"),
            "request_uri" => Some(b"/i?e=pv&tv=js-3.17.0"),
            "status" => Some(b"200"),
            "http_user_agent" => Some(ua),
            _ => None,
        },
        &mut line,
    );
    line
}

#[test]
fn one_megabyte_lines() {
    let format = LogFormat::canonical();

    let ua = vec![b'a'; 1 << 20];
    let line = canonical_line(&ua);
    let record = format.parse(&line).unwrap();
    assert!(matches!(record.var("http_user_agent"), Some(Cow::Borrowed(v)) if v.len() == 1 << 20));
    assert_eq!(record.hit().unwrap().user_agent.unwrap().len(), 1 << 20);

    let ua: Vec<u8> = b"\"\t\xe9".iter().copied().cycle().take(1 << 20).collect();
    let line = canonical_line(&ua);
    assert!(line.len() > 4 << 20);
    let record = format.parse(&line).unwrap();
    assert_eq!(record.var("http_user_agent").unwrap(), &ua[..]);

    let garbage: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 1)
        .map(|b| if b == b'\t' { b' ' } else { b })
        .collect();
    let err = format.parse(&garbage).unwrap_err();
    expect![[r#"field $msec at byte 0: expected "\t", found end of line"#]]
        .assert_eq(&err.to_string());

    let mut escapes = line.clone();
    let at = escapes[..escapes.len() - 100]
        .iter()
        .rposition(|&b| b == b'\\')
        .unwrap();
    escapes.splice(at..at + 4, *br"\xZ9");
    let err = format.parse(&escapes).unwrap_err();
    assert_eq!(err.field(), Some("http_user_agent"));
    assert_eq!(err.offset(), Some(at));
}

/// Values for the canonical format's 13 variables: absent, or any bytes.
fn values(n: usize) -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    prop::collection::vec(
        prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        n,
    )
}

/// Writes `values` (by variable index) with `format`, parses the line back, and checks that every
/// value survives, up to what nginx itself cannot tell apart: a value that reads as "not set".
fn round_trip(format: &LogFormat, values: &[Option<Vec<u8>>]) -> Result<(), TestCaseError> {
    let names: Vec<&str> = format.variables().collect();
    let mut line = Vec::new();
    format.write_line(
        |var| values[names.iter().position(|n| *n == var).unwrap()].as_deref(),
        &mut line,
    );
    let record = format
        .parse(&line)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (i, value) in values.iter().enumerate() {
        let expected = value.as_deref().filter(|v| match format.escape() {
            Escape::Default => *v != b"-",
            Escape::Json | Escape::None => !v.is_empty(),
        });
        let actual = record.get(i);
        prop_assert_eq!(actual.as_deref(), expected, "variable ${}", names[i]);
    }
    Ok(())
}

/// Literals that no escaped value can contain (in both escape modes), so any values round-trip.
const SAFE_LITERALS: &[&str] = &[
    "\t",
    "\"",
    "\" \"",
    "] \"",
    "\t|\t",
    "\",\"b\":\"",
    "\x01",
    "\"}",
];

/// A format of 1 to 8 variables, separated by literals that no escaped value can contain, with an
/// optional leading literal and one of them also at the end.
fn formats() -> impl Strategy<Value = String> {
    let literal = prop::sample::select(SAFE_LITERALS);
    (
        prop::option::of(literal.clone()),
        prop::collection::vec(literal, 0..8),
        prop::option::of(prop::sample::select(SAFE_LITERALS)),
        any::<bool>(),
    )
        .prop_map(|(head, seps, tail, braced)| {
            let mut format = head.unwrap_or_default().to_owned();
            for (i, sep) in seps.iter().enumerate() {
                if braced {
                    let _ = write!(format, "${{v{i}}}{sep}");
                } else {
                    let _ = write!(format, "$v{i}{sep}");
                }
            }
            let _ = write!(format, "$last{}", tail.unwrap_or_default());
            format
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_round_trips(values in values(13)) {
        round_trip(&LogFormat::canonical(), &values)?;
    }

    #[test]
    fn json_round_trips(values in values(4)) {
        let format = LogFormat::compile(
            r#"{"a":"$a","b":"$b","c":$c,"d":"$d"}"#,
            Escape::Json,
        ).unwrap();
        round_trip(&format, &values)?;
    }

    #[test]
    fn user_formats_round_trip(
        source in formats(),
        json in any::<bool>(),
        values in values(9),
    ) {
        let escape = if json { Escape::Json } else { Escape::Default };
        let format = LogFormat::compile(&source, escape).unwrap();
        round_trip(&format, &values[..format.variables().len()])?;
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly(line in prop::collection::vec(any::<u8>(), 0..256)) {
        for format in [
            LogFormat::canonical(),
            LogFormat::combined(),
            LogFormat::compile(r#"{"a":"$a","t":"$time_iso8601","r":"$request"}"#, Escape::Json).unwrap(),
        ] {
            if let Ok(record) = format.parse(&line) {
                let _ = record.hit();
                for i in 0..record.len() {
                    let _ = record.get(i);
                }
            }
        }
    }
}
