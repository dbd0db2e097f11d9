//! Tracker-protocol decoding: a realistic tp1 page view (about 800 bytes, with a `co` contexts
//! envelope) from query string to typed event, and the same events batched in a tp2 body.
//!
//! Throughput is in bytes of query string or body; events/s is bytes/s divided by the bytes per
//! event printed at start-up.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use plowline_collector::tracker::{parse_query, parse_tp2, RawEvent};

const CONTEXTS: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"4b1c3f0a-2d6e-4e8f-9a1b-7c5d3e2f1a0b"}},{"schema":"iglu:com.acme/product/jsonschema/1-0-2","data":{"sku":"SKU-12345","name":"Trail shoe","price":129.95}}]}"#;

/// A page view as the JavaScript tracker sends it (`encodeBase64: false`).
fn page_view() -> Vec<(&'static str, &'static str)> {
    vec![
        ("e", "pv"),
        (
            "url",
            "https://shop.example.com/products/trail-shoe?utm_source=news",
        ),
        ("page", "Trail running shoe | Example Shop"),
        ("tv", "js-3.17.0"),
        ("tna", "sp1"),
        ("aid", "shop"),
        ("p", "web"),
        ("tz", "Europe/Berlin"),
        ("lang", "de-DE"),
        ("cs", "UTF-8"),
        ("res", "1920x1080"),
        ("cd", "24"),
        ("cookie", "1"),
        ("eid", "c6ef3124-b53a-4b13-a233-0088f79dcbcb"),
        ("dtm", "1700000000123"),
        ("stm", "1700000000456"),
        ("vp", "1280x720"),
        ("vid", "3"),
        ("sid", "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1"),
        ("duid", "5f7b6d1e-2c3a-4d5e-8f90-123456789abc"),
        ("co", CONTEXTS),
    ]
}

/// `encodeURIComponent`.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn tp1_query() -> String {
    page_view()
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn tp2_body(events: usize) -> String {
    let event: serde_json::Map<String, serde_json::Value> = page_view()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    let body = serde_json::json!({
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": vec![event; events],
    });
    body.to_string()
}

fn tracker(c: &mut Criterion) {
    let query = tp1_query();
    let body = tp2_body(10);
    eprintln!(
        "tp1 query: {} bytes per event; tp2 body: {} bytes for 10 events",
        query.len(),
        body.len()
    );

    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Bytes(query.len() as u64));
    group.bench_function("tp1_decode", |b| {
        b.iter(|| {
            let params = parse_query(black_box(query.as_bytes()));
            let event = RawEvent::from_params(&params).unwrap();
            black_box(event.contexts.len())
        })
    });
    group.bench_function("tp1_parse_query_only", |b| {
        b.iter(|| parse_query(black_box(query.as_bytes())).len())
    });
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("tp2_decode_10_events", |b| {
        b.iter(|| {
            let events = parse_tp2(black_box(body.as_bytes())).unwrap();
            events
                .iter()
                .map(|params| RawEvent::from_params(params).unwrap().contexts.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = tracker
}
criterion_main!(benches);
