//! Throughput of the processor's core: access-log line → enriched events → JSON (or TSV), on a
//! realistic corpus of canonical lines written with `LogFormat::canonical().write_line`: page
//! views with two context entities, page pings, structured events, base64 unstruct events with
//! contexts, and tp2 POSTs of three events, from a few hundred users and user agents. Without
//! enrichments (the core) and, for JSON, with the default ones.
//!
//! `cargo bench -p plowline-processor --bench enrich`

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use plowline_collector::logformat::LogFormat;
use plowline_processor::enrichments::{Enrichments, EnrichmentsConfig};
use plowline_processor::output::OutputFormat;
use plowline_processor::pipeline::{
    process_line_into, process_line_with, Context, Enrich, LineOutcome, NoEnrichments,
};

/// The allocator `plow-processor` uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LINES: usize = 10_000;

const UAS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
];

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn contexts(i: usize) -> String {
    format!(
        r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{{"id":"a0c5e9f1-3d4b-4f0e-9a4c-{i:012x}"}}}},{{"schema":"iglu:com.acme/productEntity/jsonschema/1-0-2","data":{{"sku":"SKU-{}","name":"Chelsea boot","price":{}.5,"tags":["leather","brown"]}}}}]}}"#,
        i % 500,
        i % 200
    )
}

fn common(i: usize) -> String {
    let user = i % 700;
    format!(
        "tv=js-3.17.0&tna=sp1&aid=shop&p=web&tz=Europe%2FLondon&lang=en-GB&cs=UTF-8&res=1920x1080\
         &vp=1200x800&ds=1180x3000&cd=24&cookie=1&duid=8e1d5e4b-6a8a-4c58-b7a4-{user:012x}\
         &sid=0bd0c5f0-6d1e-4fca-8f31-{user:012x}&vid={}&dtm={}&stm={}\
         &url={}&refr={}&page=Chelsea%20boots%20%7C%20Shop",
        1 + i % 9,
        1_700_000_000_000 + i as u64 * 37,
        1_700_000_000_050 + i as u64 * 37,
        encode(&format!(
            "https://shop.example.com/boots/item-{}?utm_source=news&utm_medium=email",
            i % 300
        )),
        encode("https://www.google.com/search?q=chelsea+boots"),
    )
}

fn eid(i: usize) -> String {
    format!("c6ef3124-b53a-4b13-a233-{i:012x}")
}

/// The canonical log lines of the corpus, and how many events they hold.
fn corpus() -> (Vec<Vec<u8>>, u64) {
    let format = LogFormat::canonical();
    let mut lines = Vec::with_capacity(LINES);
    let mut events = 0;
    for i in 0..LINES {
        let (method, uri, body, n) = match i % 10 {
            0..=3 => {
                let q = format!(
                    "e=pv&eid={}&{}&co={}",
                    eid(i),
                    common(i),
                    encode(&contexts(i))
                );
                ("GET", format!("/i?{q}"), None, 1)
            }
            4..=5 => {
                let q = format!(
                    "e=pp&eid={}&{}&pp_mix=0&pp_max=120&pp_miy=0&pp_may={}&cx={}",
                    eid(i),
                    common(i),
                    i % 3000,
                    URL_SAFE_NO_PAD.encode(contexts(i))
                );
                ("GET", format!("/i?{q}"), None, 1)
            }
            6 => {
                let q = format!(
                    "e=se&eid={}&{}&se_ca=shop&se_ac=add-to-basket&se_la=SKU-{}&se_va=99.5&co={}",
                    eid(i),
                    common(i),
                    i % 500,
                    encode(&contexts(i))
                );
                ("GET", format!("/i?{q}"), None, 1)
            }
            7..=8 => {
                let ue = format!(
                    r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{{"schema":"iglu:com.acme/buttonClick/jsonschema/1-0-0","data":{{"id":"buy-now","n":{}}}}}}}"#,
                    i % 7
                );
                let q = format!(
                    "e=ue&eid={}&{}&ue_px={}&cx={}",
                    eid(i),
                    common(i),
                    URL_SAFE_NO_PAD.encode(ue),
                    URL_SAFE_NO_PAD.encode(contexts(i))
                );
                ("GET", format!("/i?{q}"), None, 1)
            }
            _ => {
                let event = |e: &str, k: usize| {
                    format!(
                        r#"{{"e":"{e}","eid":"{}","p":"web","aid":"shop","tv":"js-3.17.0","url":"https://shop.example.com/checkout","dtm":"{}","stm":"{}","co":{}}}"#,
                        eid(i * 3 + k),
                        1_700_000_000_000 + i,
                        1_700_000_000_100 + i,
                        serde_json::to_string(&contexts(i)).unwrap()
                    )
                };
                let body = format!(
                    r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{},{},{}]}}"#,
                    event("pv", 0),
                    event("pp", 1),
                    event("se", 2)
                );
                (
                    "POST",
                    "/com.snowplowanalytics.snowplow/tp2".to_owned(),
                    Some(body),
                    3,
                )
            }
        };
        events += n;
        let msec = format!("{}.{:03}", 1_700_000_000 + i / 100, i % 1000);
        let xff = format!("10.0.{}.{}, 81.2.{}.{}", i % 3, i % 250, i % 200, i % 250);
        let uid = format!("sp=0100007F9C38026BC521C2A1{:08X}", i % 700);
        let mut line = Vec::new();
        format.write_line(
            |var| match var {
                "msec" => Some(msec.as_bytes()),
                "remote_addr" => Some(b"203.0.113.7".as_slice()),
                "http_x_forwarded_for" => Some(xff.as_bytes()),
                "host" => Some(b"collector.example.com".as_slice()),
                "request_method" => Some(method.as_bytes()),
                "request_uri" => Some(uri.as_bytes()),
                "status" => Some(b"200".as_slice()),
                "http_referer" => Some(b"https://shop.example.com/boots".as_slice()),
                "http_user_agent" => Some(UAS[i % UAS.len()].as_bytes()),
                "uid_got" => Some(uid.as_bytes()),
                "request_id" => Some(b"0f1e2d3c4b5a69788796a5b4c3d2e1f0".as_slice()),
                "request_body" => body.as_deref().map(str::as_bytes),
                _ => None,
            },
            &mut line,
        );
        line.pop();
        lines.push(line);
    }
    (lines, events)
}

fn bench(c: &mut Criterion) {
    let (lines, events) = corpus();
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    let format = LogFormat::canonical();
    let ctx = Context {
        format: &format,
        max_line_bytes: 1 << 20,
        etl_tstamp_ms: 1_700_000_100_000,
        enrich: &NoEnrichments,
    };
    // Every line of the corpus must be good.
    let mut check = LineOutcome::default();
    for line in &lines {
        process_line_into(line, &ctx, &mut check);
    }
    assert_eq!(check.events.len() as u64, events);
    assert!(check.bad_rows.is_empty(), "{:?}", check.bad_rows.first());

    // With enrichments, each iteration gets fresh ones (built outside the timing), so that the
    // duplicate window never sees the corpus twice and the user-agent cache starts cold, as in
    // a run over new data.
    let defaults = || Enrichments::new(&EnrichmentsConfig::default()).unwrap();
    for (name, output, enriched) in [
        ("line_to_json", Some(OutputFormat::Json), false),
        ("line_to_tsv", Some(OutputFormat::Tsv), false),
        ("line_to_event", None, false),
        (
            "line_to_json_default_enrichments",
            Some(OutputFormat::Json),
            true,
        ),
    ] {
        for throughput in [Throughput::Elements(events), Throughput::Bytes(bytes)] {
            let unit = match throughput {
                Throughput::Elements(_) => "events",
                _ => "bytes",
            };
            let mut group = c.benchmark_group(format!("enrich/{unit}"));
            group.throughput(throughput);
            group.sample_size(20);
            group.bench_function(name, |b| {
                let mut bad_rows = Vec::new();
                let mut out = Vec::with_capacity(1 << 20);
                b.iter_batched_ref(
                    || enriched.then(defaults),
                    |enrichments| {
                        let enrich: &dyn Enrich = match enrichments {
                            Some(enrichments) => enrichments,
                            None => &NoEnrichments,
                        };
                        let ctx = Context { enrich, ..ctx };
                        out.clear();
                        // As `plow-processor` does: each event written while its line is at
                        // hand, its text borrowed, never copied into an owned event.
                        for line in &lines {
                            bad_rows.clear();
                            process_line_with(line, &ctx, &mut bad_rows, |event| match output {
                                Some(output) => output.write_line(event, &mut out),
                                None => {
                                    black_box(event);
                                }
                            });
                            if out.len() > 1 << 20 {
                                out.clear();
                            }
                        }
                        out.len()
                    },
                    BatchSize::PerIteration,
                );
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
