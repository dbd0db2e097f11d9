//! Encoding of enriched events into Elasticsearch `_bulk` bodies, the CPU work of the
//! Elasticsearch writer per document: read `event_id` and the timestamps, write the action line
//! and the document (and gzip the body, as the sink sends it by default). The corpus: the
//! golden tracker lines of `test_data/ok` (page views with contexts, struct and unstruct
//! events, transactions, tp2 POSTs) through the pipeline, 10 000 documents with ids of their own.
//!
//! `cargo bench -p plowline-processor --bench es_bulk`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plowline_collector::logformat::LogFormat;
use plowline_processor::output::json::write_json_event;
use plowline_processor::pipeline::{process_line, Context, NoEnrichments};
use plowline_processor::sinks::elasticsearch::config::Target;
use plowline_processor::sinks::elasticsearch::encoder::Encoder;
use plowline_processor::sinks::elasticsearch::service::gzip;
use plowline_processor::sinks::elasticsearch::OpType;

/// The allocator `plow-processor` uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DOCS: usize = 10_000;

fn corpus() -> Vec<Vec<u8>> {
    let format = LogFormat::canonical();
    let ctx = Context {
        format: &format,
        max_line_bytes: 1 << 20,
        etl_tstamp_ms: 1_700_000_100_000,
        enrich: &NoEnrichments,
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/ok");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    let mut events = Vec::new();
    for path in paths {
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            events.extend(process_line(line.as_bytes(), &ctx).events);
        }
    }
    (0..DOCS)
        .map(|i| {
            let mut event = events[i % events.len()].clone();
            event.event_id = Some(format!("c6ef3124-b53a-4b13-a233-{i:012x}").into());
            event.collector_tstamp += i as i64 * 8_640_000;
            event.derived_tstamp = event.derived_tstamp.map(|t| t + i as i64 * 8_640_000);
            let mut json = Vec::new();
            write_json_event(&event, &mut json);
            json
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let docs = corpus();
    let encoder = Encoder::new(
        Target::Daily {
            prefix: "tracker-events".into(),
        },
        OpType::Create,
    );
    let encode = || encoder.encode_batch(docs.iter().map(Vec::as_slice));
    let sample = encode();
    assert_eq!(sample.items.len(), DOCS, "{:?}", sample.unreadable.first());
    let body_bytes = sample.body.len() as u64;
    let gzip_bytes = gzip(&sample.body).len() as u64;
    println!(
        "corpus: {DOCS} documents, {:.0} bytes of _bulk body each, {:.1}x smaller gzipped",
        body_bytes as f64 / DOCS as f64,
        body_bytes as f64 / gzip_bytes as f64
    );

    for (name, zip) in [("encode", false), ("encode_gzip", true)] {
        for throughput in [
            Throughput::Elements(DOCS as u64),
            Throughput::Bytes(body_bytes),
        ] {
            let unit = match throughput {
                Throughput::Elements(_) => "docs",
                _ => "body_bytes",
            };
            let mut group = c.benchmark_group(format!("es_bulk/{unit}"));
            group.throughput(throughput);
            group.sample_size(20);
            group.bench_function(name, |b| {
                b.iter(|| {
                    let batch = encode();
                    if zip {
                        gzip(&batch.body).len()
                    } else {
                        batch.body.len()
                    }
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
