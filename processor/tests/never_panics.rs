//! Property tests of the pipeline: any bytes, or any tracker query string, never panic and always
//! give at least one good event or one bad row; outputs are always one line each.

use plowline_collector::logformat::LogFormat;
use plowline_processor::output::OutputFormat;
use plowline_processor::pipeline::{process_line, Context, NoEnrichments};
use proptest::prelude::*;

fn check(line: &[u8], format: &LogFormat) {
    let ctx = Context {
        format,
        max_line_bytes: 4096,
        etl_tstamp_ms: 1_700_000_000_000,
        enrich: &NoEnrichments,
    };
    let outcome = process_line(line, &ctx);
    assert!(!outcome.events.is_empty() || !outcome.bad_rows.is_empty());
    for event in &outcome.events {
        for output in [OutputFormat::Json, OutputFormat::Tsv] {
            let mut out = Vec::new();
            output.write_line(event, &mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            if output == OutputFormat::Json {
                serde_json::from_slice::<serde_json::Value>(&out).unwrap();
            } else {
                assert_eq!(out.iter().filter(|&&b| b == b'\t').count(), 130);
            }
        }
    }
    for row in &outcome.bad_rows {
        let mut out = Vec::new();
        row.write_line(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}

fn canonical_get(uri: &[u8], xff: &[u8], referer: &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    LogFormat::canonical().write_line(
        |var| match var {
            "msec" => Some(b"1700000000.123".as_slice()),
            "request_method" => Some(b"GET".as_slice()),
            "request_uri" => Some(uri),
            "http_x_forwarded_for" => Some(xff),
            "http_referer" => Some(referer),
            "status" => Some(b"200".as_slice()),
            _ => None,
        },
        &mut line,
    );
    line.pop();
    line
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&line, &LogFormat::canonical());
        check(&line, &LogFormat::combined());
    }

    #[test]
    fn any_tracker_query(
        pairs in proptest::collection::vec(
            (
                prop::sample::select(vec![
                    "e", "p", "eid", "url", "refr", "dtm", "stm", "ttm", "ip", "ua", "co", "cx",
                    "ue_pr", "ue_px", "res", "vid", "se_va", "tr_tt", "ti_qu", "pp_mix", "nuid",
                    "tnuid", "sid", "cookie", "f_pdf", "cd",
                ]),
                prop_oneof![
                    Just("pv".to_owned()),
                    Just("web".to_owned()),
                    Just("ue".to_owned()),
                    Just("http://a.example:99999/x".to_owned()),
                    Just("%7B%22schema%22%3A1%7D".to_owned()),
                    "[ -~]{0,20}",
                    "\\PC{0,12}",
                ],
            ),
            0..12,
        ),
        xff in "[0-9a-f.:, ]{0,40}",
        referer in "\\PC{0,30}",
    ) {
        let mut uri = b"/i?e=pv&p=web".to_vec();
        for (key, value) in pairs {
            uri.push(b'&');
            uri.extend_from_slice(key.as_bytes());
            uri.push(b'=');
            uri.extend_from_slice(value.as_bytes());
        }
        check(&canonical_get(&uri, xff.as_bytes(), referer.as_bytes()), &LogFormat::canonical());
    }
}
