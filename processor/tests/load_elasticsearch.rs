//! The Elasticsearch sink against the Elasticsearch test server (`es-test-server`, which
//! reproduces the documented `_bulk` semantics and injects faults), through the `Sink` trait the
//! loader uses. Documents are real enriched events: the golden tracker lines of `test_data/ok`
//! run through the pipeline, each copy given an event id of its own.

use std::time::{Duration, Instant};

use plowline_collector::logformat::LogFormat;
use plowline_es_test_server::{Fault, Options, TestServer};
use plowline_processor::output::json::write_json_event;
use plowline_processor::pipeline::{process_line, Context, NoEnrichments};
use plowline_processor::sinks::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use plowline_processor::sinks::{Doc, Origin, Outcome, Sink, SinkError};
use plowline_processor::EnrichedEvent;
use serde_json::Value;

/// The enriched events of every golden line.
fn golden_events() -> Vec<EnrichedEvent<'static>> {
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
    assert!(events.len() >= 10, "{} golden events", events.len());
    events
}

fn eid(test: u32, i: usize) -> String {
    format!("e5a1e5a1-0000-4000-8{test:03x}-{i:012x}")
}

/// `n` enriched events as JSON documents with distinct ids (`eid(test, i)`).
fn documents(test: u32, n: usize) -> Vec<(String, Vec<u8>)> {
    let golden = golden_events();
    (0..n)
        .map(|i| {
            let mut event = golden[i % golden.len()].clone();
            let id = eid(test, i);
            event.event_id = Some(id.clone().into());
            let mut json = Vec::new();
            write_json_event(&event, &mut json);
            (id, json)
        })
        .collect()
}

fn doc(json: Vec<u8>, line: u64) -> Doc {
    Doc {
        json,
        origin: Origin::Line(line),
    }
}

fn config(endpoints: &[String], prefix: &str, extra: &str) -> ElasticsearchConfig {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    toml::from_str(&format!(
        "endpoints = [{}]\nindex_prefix = \"{prefix}\"\ntemplate_name = \"{prefix}\"\n\
         retry_initial_backoff_ms = 10\nretry_max_backoff_ms = 100\nrequest_timeout_ms = 1000\n{extra}",
        endpoints.join(", ")
    ))
    .unwrap()
}

fn start_server() -> TestServer {
    TestServer::start(Options::default()).unwrap()
}

/// The document `json` with `field` set to `value` (to break the mapping).
fn with_field(json: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(json).unwrap();
    doc[field] = value;
    serde_json::to_vec(&doc).unwrap()
}

/// `_refresh` then `_count` over HTTP, as a user would.
async fn http_count(server: &TestServer, target: &str) -> u64 {
    let client = reqwest::Client::new();
    let refresh = client
        .post(format!("{}/{target}/_refresh", server.url()))
        .send()
        .await
        .unwrap();
    assert!(refresh.status().is_success());
    let count = client
        .get(format!("{}/{target}/_count", server.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let count: Value = serde_json::from_slice(&count).unwrap();
    count["count"].as_u64().unwrap()
}

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_storm_of_429s_and_a_few_400s_index_every_good_event_exactly_once() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(
        &[server.url()],
        "storm",
        "max_request_bytes = 65536",
    ))
    .unwrap();
    sink.prepare().await.unwrap();

    let good = documents(1, 400);
    // Documents whose values do not fit the template's mappings.
    let broken = [
        ("se_value", serde_json::json!("lots")),
        ("geo_location", serde_json::json!("200,0")),
        ("page_urlport", serde_json::json!({"port": 80})),
        ("dvce_created_tstamp", serde_json::json!("yesterday")),
        ("app_id", serde_json::json!({"name": "shop"})),
    ];
    let bad: Vec<(String, Vec<u8>, &str)> = documents(2, broken.len())
        .into_iter()
        .zip(&broken)
        .map(|((id, json), (field, value))| (id, with_field(&json, field, value.clone()), *field))
        .collect();
    let unreadable = [b"not json".to_vec(), br#"{"event_id":"nope"}"#.to_vec()];

    // Two batches: good documents with the broken and unreadable ones among them.
    let mut first: Vec<Doc> = good[..200].iter().map(|(_, j)| doc(j.clone(), 0)).collect();
    first.insert(10, doc(bad[0].1.clone(), 0));
    first.insert(50, doc(unreadable[0].clone(), 0));
    first.push(doc(bad[1].1.clone(), 0));
    let mut second: Vec<Doc> = good[200..].iter().map(|(_, j)| doc(j.clone(), 0)).collect();
    second.insert(0, doc(bad[2].1.clone(), 0));
    second.insert(100, doc(bad[3].1.clone(), 0));
    second.insert(150, doc(unreadable[1].clone(), 0));
    second.push(doc(bad[4].1.clone(), 0));

    let faults =
        "items-429:0.5,items-429:0.5,429/1,items-429:0.5,503,reset,items-429:0.5,reset-after,\
                  items-429:0.5,500,delay:1500,items-429:0.5,items-429:0.5,429,items-429:0.5";
    let faults: Vec<Fault> = faults.split(',').map(|f| f.parse().unwrap()).collect();
    let whole_request_faults = faults
        .iter()
        .filter(|f| {
            matches!(
                f,
                Fault::Status { .. } | Fault::Reset | Fault::ResetAfter | Fault::Delay { .. }
            )
        })
        .count() as u64;
    server.push_faults(faults);

    let started = Instant::now();
    let mut outcomes = sink.write(&first).await.unwrap();
    outcomes.extend(sink.write(&second).await.unwrap());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(server.pending_faults(), 0, "every fault was met");

    let all: Vec<&Doc> = first.iter().chain(&second).collect();
    assert_eq!(outcomes.len(), all.len());
    let mut written = 0;
    let mut rejected = Vec::new();
    let mut unreadable_seen = 0;
    for (doc, outcome) in all.iter().zip(&outcomes) {
        match outcome {
            Outcome::Written => written += 1,
            Outcome::Rejected(reason) => rejected.push((doc.json.clone(), reason.clone())),
            Outcome::Unreadable(reasons) => {
                assert!(!reasons.is_empty());
                unreadable_seen += 1;
            }
            Outcome::BadRowWritten => panic!("no bad row was sent"),
        }
    }
    assert_eq!((written, rejected.len(), unreadable_seen), (400, 5, 2));
    for (id, json, field) in &bad {
        let (_, reason) = rejected
            .iter()
            .find(|(j, _)| j == json)
            .unwrap_or_else(|| panic!("{id} not rejected"));
        assert!(
            reason.starts_with("400 document_parsing_exception: "),
            "{reason}"
        );
        assert!(reason.contains(&format!("[{field}]")), "{field}: {reason}");
        assert!(reason.contains(id.as_str()), "{reason}");
        assert_eq!(server.times_indexed(id), 0);
    }

    // Every good event indexed exactly once, whatever was retried.
    for (id, _) in &good {
        assert_eq!(server.times_indexed(id), 1, "{id}");
    }
    assert_eq!(http_count(&server, "storm-*").await, 400);

    let stats = server.stats();
    let metrics = sink.metrics();
    assert_eq!(load(&metrics.documents_written), 400);
    assert_eq!(load(&metrics.documents_rejected), 5);
    assert_eq!(load(&metrics.documents_unreadable), 2);
    assert!(stats.items_rejected_429 > 100, "{stats:?}");
    assert_eq!(load(&metrics.documents_retried), stats.items_rejected_429);
    assert_eq!(load(&metrics.bulk_requests_retried), whole_request_faults);
    // The request answered by a reset after it was processed comes back as 409s, written.
    assert!(load(&metrics.documents_already_present) > 0);
    assert!(load(&metrics.documents_already_present) <= stats.items_conflicts);
    // (The delayed request may have been processed after the sink gave up on it: its broken
    // documents then failed twice on the server, though returned once.)
    assert!(stats.items_failed_400 >= 5, "{stats:?}");
    let text = metrics.render();
    assert!(
        text.contains("plowline_loader_elasticsearch_documents_written_total 400\n"),
        "{text}"
    );
    assert!(
        text.contains("plowline_loader_elasticsearch_documents_rejected_total 5\n"),
        "{text}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_on_a_whole_request_429() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(
        &[server.url()],
        "patience",
        "install_template = false",
    ))
    .unwrap();
    server.push_faults(["429/2".parse().unwrap(), "503/1".parse().unwrap()]);
    let docs: Vec<Doc> = documents(3, 3)
        .into_iter()
        .map(|(_, j)| doc(j, 1))
        .collect();
    let started = Instant::now();
    let outcomes = sink.write(&docs).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcomes, vec![Outcome::Written; 3]);
    // The backoff alone is at most 100 ms per retry.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_eq!(server.stats().faulted_status, 2);
}

#[tokio::test]
async fn the_index_template_and_ilm_policy_are_installed_with_the_right_mappings() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(
        &[server.url()],
        "mapped",
        "[ilm]\npolicy_name = \"mapped-policy\"\ndelete_after_days = 14",
    ))
    .unwrap();
    sink.prepare().await.unwrap();
    sink.prepare().await.unwrap();

    let template = server.template("mapped").unwrap();
    assert_eq!(template["index_patterns"], serde_json::json!(["mapped-*"]));
    assert_eq!(
        template["template"]["settings"]["index"]["lifecycle"]["name"],
        "mapped-policy"
    );
    let policy = server.ilm_policy("mapped-policy").unwrap();
    assert_eq!(policy["phases"]["delete"]["min_age"], "14d");

    let docs = documents(4, 30);
    let batch: Vec<Doc> = docs.iter().map(|(_, j)| doc(j.clone(), 1)).collect();
    assert_eq!(
        sink.write(&batch).await.unwrap(),
        vec![Outcome::Written; 30]
    );

    // The daily index of the events' derived_tstamp, mapped from the template.
    let first: Value = serde_json::from_slice(&docs[0].1).unwrap();
    let day = first["derived_tstamp"].as_str().unwrap()[..10].replace('-', ".");
    let index = format!("mapped-{day}");
    assert!(
        server.document(&index, &docs[0].0).is_some(),
        "{:?}",
        server.index_names()
    );
    for (field, ty) in [
        ("event_id", "keyword"),
        ("domain_userid", "keyword"),
        ("page_urlhost", "keyword"),
        ("collector_tstamp", "date"),
        ("derived_tstamp", "date"),
        ("geo_location", "geo_point"),
        ("se_value", "double"),
        ("domain_sessionidx", "integer"),
        ("br_cookies", "boolean"),
        // Entities, mapped dynamically: strings as keyword, numbers as double.
        ("contexts_com_acme_product_entity_1.sku", "keyword"),
        ("contexts_com_acme_product_entity_1.price", "double"),
        (
            "contexts_com_snowplowanalytics_snowplow_web_page_1.id",
            "keyword",
        ),
    ] {
        assert_eq!(
            server.field_type(&index, field).as_deref(),
            Some(ty),
            "{field}"
        );
    }
}

#[tokio::test]
async fn gzip_and_plain_bodies_are_accepted_and_a_rewrite_changes_nothing() {
    let server = start_server();
    let docs = documents(5, 60);
    let batch: Vec<Doc> = docs.iter().map(|(_, j)| doc(j.clone(), 1)).collect();

    let mut gzipped = ElasticsearchSink::new(&config(&[server.url()], "again", "")).unwrap();
    gzipped.prepare().await.unwrap();
    assert_eq!(
        gzipped.write(&batch).await.unwrap(),
        vec![Outcome::Written; 60]
    );
    let gzip_requests = server.stats().gzip_requests;
    assert!(gzip_requests >= 1);
    // The same batch again (a redelivery): same ids, nothing indexed twice.
    assert_eq!(
        gzipped.write(&batch).await.unwrap(),
        vec![Outcome::Written; 60]
    );
    assert_eq!(load(&gzipped.metrics().documents_already_present), 60);
    assert_eq!(http_count(&server, "again-*").await, 60);

    let mut plain =
        ElasticsearchSink::new(&config(&[server.url()], "again", "gzip = false")).unwrap();
    assert_eq!(
        plain.write(&batch).await.unwrap(),
        vec![Outcome::Written; 60]
    );
    assert_eq!(
        server.stats().gzip_requests,
        gzip_requests + 1,
        "the plain sink sent no gzip"
    );
    for (id, _) in &docs {
        assert_eq!(server.times_indexed(id), 1, "{id}");
    }
    // op_type = "index" replaces the documents: still one per id, now twice indexed.
    let mut replace =
        ElasticsearchSink::new(&config(&[server.url()], "again", "op_type = \"index\"")).unwrap();
    assert_eq!(
        replace.write(&batch).await.unwrap(),
        vec![Outcome::Written; 60]
    );
    assert_eq!(http_count(&server, "again-*").await, 60);
    assert_eq!(server.times_indexed(&docs[0].0), 2);
    assert_eq!(server.stats().items_updated, 60);
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_and_bad_credentials_stop_with_what_to_check() {
    let server = TestServer::start(Options {
        api_key: Some("a2V5OnNlY3JldA==".into()),
        ..Options::default()
    })
    .unwrap();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let endpoints = [dead, server.url()];

    let mut anonymous = ElasticsearchSink::new(&config(&endpoints, "locked", "")).unwrap();
    match anonymous.prepare().await {
        Err(SinkError::Fatal {
            sink: "elasticsearch",
            message,
        }) => {
            assert!(
                message.contains("401") && message.contains("api_key"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    let mut sink = ElasticsearchSink::new(&config(
        &endpoints,
        "locked",
        "api_key = \"a2V5OnNlY3JldA==\"",
    ))
    .unwrap();
    sink.prepare().await.unwrap();
    let docs: Vec<Doc> = documents(6, 20)
        .into_iter()
        .map(|(_, j)| doc(j, 1))
        .collect();
    for _ in 0..3 {
        assert_eq!(sink.write(&docs).await.unwrap(), vec![Outcome::Written; 20]);
    }
    assert!(
        load(&sink.metrics().bulk_requests_retried) >= 1,
        "the dead endpoint was tried"
    );
    assert_eq!(server.count("locked-*"), 20);
}

#[tokio::test]
async fn a_data_stream_takes_create_operations_with_a_timestamp() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(
        &[server.url()],
        "unused",
        "data_stream = \"events-plowline\"\n[ilm]\nrollover_max_age_hours = 6",
    ))
    .unwrap();
    sink.prepare().await.unwrap();
    assert_eq!(
        server.template("unused").unwrap()["data_stream"],
        serde_json::json!({})
    );
    let docs = documents(7, 25);
    let batch: Vec<Doc> = docs.iter().map(|(_, j)| doc(j.clone(), 1)).collect();
    assert_eq!(
        sink.write(&batch).await.unwrap(),
        vec![Outcome::Written; 25]
    );
    assert_eq!(http_count(&server, "events-plowline").await, 25);
    let stored = server.document("events-plowline", &docs[0].0).unwrap();
    let original: Value = serde_json::from_slice(&docs[0].1).unwrap();
    assert_eq!(stored["@timestamp"], original["derived_tstamp"]);
    assert_eq!(
        server
            .field_type("events-plowline", "@timestamp")
            .as_deref(),
        Some("date")
    );
}

#[test]
fn configuration_errors_are_fatal_and_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let cases = [
        (
            format!("ca_certificate_path = {:?}", dir.path().join("missing.pem")),
            "missing.pem",
        ),
        (
            format!("ca_certificate_path = {not_pem:?}"),
            "no PEM certificate",
        ),
        (
            "username = \"elastic\"".to_owned(),
            "username and password go together",
        ),
    ];
    for (extra, expected) in cases {
        match ElasticsearchSink::new(&config(&["https://127.0.0.1:9200".into()], "conf", &extra)) {
            Err(SinkError::Fatal {
                sink: "elasticsearch",
                message,
            }) => {
                assert!(message.contains(expected), "{extra}: {message}")
            }
            other => panic!("{extra}: {other:?}"),
        }
    }
}

/// Real bad rows: every malformed tracker line of `test_data/err` through the pipeline, `copies`
/// times with different processing times (each copy a distinct bad row), as JSON documents.
fn pipeline_bad_rows(copies: i64) -> Vec<Vec<u8>> {
    let format = LogFormat::canonical();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/err");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    let mut docs = Vec::new();
    for copy in 0..copies {
        let ctx = Context {
            format: &format,
            max_line_bytes: 1 << 20,
            etl_tstamp_ms: 1_700_000_100_000 + copy * 1_000,
            enrich: &NoEnrichments,
        };
        for path in &paths {
            for line in std::fs::read_to_string(path).unwrap().lines() {
                for row in process_line(line.as_bytes(), &ctx).bad_rows {
                    let mut json = Vec::new();
                    row.write_line(&mut json);
                    json.pop();
                    docs.push(json);
                }
            }
        }
    }
    docs
}

#[tokio::test]
async fn bad_rows_are_indexed_once_each_into_the_daily_bad_indices() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(
        &[server.url()],
        "evs",
        "bad_index_prefix = \"evs-bad\"\nbad_template_name = \"evs-bad\"",
    ))
    .unwrap();
    sink.prepare().await.unwrap();
    let template = server.template("evs-bad").unwrap();
    assert_eq!(template["index_patterns"], serde_json::json!(["evs-bad-*"]));

    let bad = pipeline_bad_rows(3);
    let events = documents(9, 4);
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for json in &bad {
        let doc: Value = serde_json::from_slice(json).unwrap();
        *expected
            .entry(doc["schema"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(expected.len() >= 3, "{expected:?}");
    // Bad rows and events mixed, as a loader may read them: each goes where it belongs.
    let batch: Vec<Doc> = bad
        .iter()
        .chain(events.iter().map(|(_, j)| j))
        .enumerate()
        .map(|(i, j)| doc(j.clone(), i as u64 + 1))
        .collect();
    for _ in 0..2 {
        let outcomes = sink.write(&batch).await.unwrap();
        let (bad_outcomes, event_outcomes) = outcomes.split_at(bad.len());
        assert!(bad_outcomes.iter().all(|o| *o == Outcome::BadRowWritten));
        assert!(event_outcomes.iter().all(|o| *o == Outcome::Written));
        // Written twice, counted once.
        assert_eq!(http_count(&server, "evs-bad-*").await, bad.len() as u64);
        assert_eq!(http_count(&server, "evs-2*").await, events.len() as u64);
    }
    // Per type: each bad row is in the index of its failure day, under the hash of the document.
    let mut found: std::collections::BTreeMap<String, u64> = Default::default();
    for json in &bad {
        let id = plowline_processor::sinks::bad_rows::row_id(json);
        let stored = server
            .document("evs-bad-2023.11.14", &id)
            .unwrap_or_else(|| panic!("{id} not in {:?}", server.index_names()));
        *found
            .entry(stored["schema"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(found, expected);
    for (field, ty) in [
        ("schema", "keyword"),
        ("data.failure.timestamp", "date"),
        ("data.processor.artifact", "keyword"),
    ] {
        assert_eq!(
            server.field_type("evs-bad-2023.11.14", field).as_deref(),
            Some(ty),
            "{field}"
        );
    }
    assert_eq!(
        server.field_type("evs-bad-2023.11.14", "data.payload"),
        None
    );
}

#[tokio::test]
async fn a_bad_row_the_mapping_refuses_is_rejected_not_dropped() {
    let server = start_server();
    let mut sink = ElasticsearchSink::new(&config(&[server.url()], "evr", "")).unwrap();
    sink.prepare().await.unwrap();
    let mut row: Value = serde_json::from_slice(&pipeline_bad_rows(1)[0]).unwrap();
    row["data"]["processor"]["artifact"] = serde_json::json!({"not": "a keyword"});
    let outcomes = sink
        .write(&[doc(serde_json::to_vec(&row).unwrap(), 1)])
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Rejected(reason) if reason.starts_with("400 ")),
        "{outcomes:?}"
    );
}
