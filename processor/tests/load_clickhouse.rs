//! `plow-processor load clickhouse` against the real ClickHouse (18.16 here) and a real
//! Kafka-protocol broker (Tansu): every enriched event lands once, typed; a batch delivered twice
//! (the process aborted between the write and the offset store) is still one row per event
//! under `FINAL`; a ClickHouse outage loses nothing and holds the offsets; documents that cannot
//! be read or stored become loader bad rows while the good ones land; `--input` loads a file.
//!
//! Every test uses its own database, topics and consumer group. The Kafka tests start a broker
//! of their own (`scripts/services.sh`; Tansu 0.6 stalls after other tests' large fetches); the
//! outage test also starts a ClickHouse of its own, which it stops and starts again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use plowline_processor::config::Config;
use plowline_processor::output::json::write_json_event;
use plowline_processor::pipeline::{process_line, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;

fn services_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// Services started for one test under a directory of its own, stopped on drop.
struct OwnServices {
    dir: tempfile::TempDir,
    env: String,
}

impl OwnServices {
    fn start(services: &[&str]) -> OwnServices {
        let dir = tempfile::Builder::new()
            .prefix("plow-load-ch-")
            .tempdir()
            .unwrap();
        let mut own = OwnServices {
            dir,
            env: String::new(),
        };
        for service in services {
            own.run("start", service);
        }
        own
    }

    fn run(&mut self, action: &str, service: &str) {
        let out = Command::new(services_script())
            .arg(action)
            .arg(self.dir.path())
            .arg(service)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/services.sh runs");
        assert!(
            out.status.success(),
            "scripts/services.sh {action} DIR {service} failed (scripts/services.sh install?)"
        );
        self.env.push_str(&String::from_utf8_lossy(&out.stdout));
    }

    /// The last value of `export NAME=…` printed by the script.
    fn var(&self, name: &str) -> String {
        let prefix = format!("export {name}=");
        self.env
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name} in {}", self.env))
            .trim()
            .to_owned()
    }
}

impl Drop for OwnServices {
    fn drop(&mut self) {
        let _ = Command::new(services_script())
            .arg("stop")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

/// The run's ClickHouse.
fn shared_clickhouse_url() -> String {
    std::env::var("PLOWLINE_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// Names of one test: database, topics, group.
struct Names {
    database: String,
    topic: String,
    bad: String,
    group: String,
}

impl Names {
    fn new(test: &str) -> Names {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let base = format!("{test}_{}_{nanos}", std::process::id());
        Names {
            database: format!("plowline_test_{base}"),
            topic: format!("{base}-enriched"),
            bad: format!("{base}-bad"),
            group: format!("{base}-loader"),
        }
    }
}

async fn query_u64(url: &str, sql: &str) -> Result<u64, clickhouse::error::Error> {
    clickhouse::Client::default()
        .with_url(url)
        .with_compression(clickhouse::Compression::None)
        .query(sql)
        .fetch_one::<u64>()
        .await
}

async fn execute(url: &str, sql: &str) {
    clickhouse::Client::default()
        .with_url(url)
        .with_compression(clickhouse::Compression::None)
        .query(sql)
        .execute()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Distinct events in the test's table.
async fn distinct_events(url: &str, names: &Names) -> u64 {
    let sql = format!("SELECT count() FROM {}.events FINAL", names.database);
    query_u64(url, &sql).await.unwrap_or(0)
}

/// Waits until the table holds `n` distinct events; fails with the loader's log otherwise.
async fn wait_for_events(url: &str, names: &Names, n: u64, within: Duration, loader: &mut Loader) {
    let deadline = Instant::now() + within;
    loop {
        let have = distinct_events(url, names).await;
        if have == n {
            return;
        }
        if Instant::now() > deadline {
            loader.fail(&format!(
                "{have} distinct events after {within:?}, expected {n}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `n` enriched events made by the real pipeline from page-view lines with distinct eids, as
/// JSON lines; the first has geo fields (as the geo enrichment sets them). Returns the lines
/// and their event ids.
fn corpus(n: usize) -> (Vec<String>, BTreeSet<String>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/ok/page_view.log");
    let text = std::fs::read_to_string(data).unwrap();
    let template = text.lines().next().unwrap();
    let config = Config::default().validate().unwrap();
    let ctx = Context {
        format: &config.log_format,
        max_line_bytes: config.max_line_bytes,
        etl_tstamp_ms: 1_700_000_100_000,
        enrich: &config.enrichments,
    };
    let mut lines = Vec::with_capacity(n);
    let mut eids = BTreeSet::new();
    for i in 0..n {
        let eid = format!("c6ef3124-b53a-4b13-a233-{i:012x}");
        let line = template.replace(
            "eid=c6ef3124-b53a-4b13-a233-0088f79dcbcb",
            &format!("eid={eid}"),
        );
        let outcome = process_line(line.as_bytes(), &ctx);
        assert!(outcome.bad_rows.is_empty(), "{:?}", outcome.bad_rows);
        let mut event = outcome.events.into_iter().next().unwrap();
        if i == 0 {
            event.geo_country = Some("GB".into());
            event.geo_city = Some("London".into());
            event.geo_latitude = Some(51.5142);
            event.geo_longitude = Some(-0.0931);
        }
        let mut buf = Vec::new();
        write_json_event(&event, &mut buf);
        lines.push(String::from_utf8(buf).unwrap());
        eids.insert(event.event_id.unwrap().into_owned());
    }
    (lines, eids)
}

/// An event ClickHouse cannot store: a device timestamp in 2200 (outside `DateTime`).
fn unstorable(line: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(line).unwrap();
    doc["event_id"] = "0badbad0-0000-4000-8000-000000000001".into();
    doc["dvce_created_tstamp"] = "2200-01-01T00:00:00.000Z".into();
    doc.to_string()
}

fn write_config(dir: &Path, brokers: &str, clickhouse: &str, names: &Names) -> PathBuf {
    let path = dir.join("loader.toml");
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group = "{group}"
bad_topic = "{bad}"
shutdown_timeout_ms = 20000

[kafka.librdkafka]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "2000"
"auto.commit.interval.ms" = "500"
"fetch.max.bytes" = "1048576"
"max.partition.fetch.bytes" = "65536"

[batch]
max_events = 400
max_wait_ms = 300

[clickhouse]
url = "{clickhouse}"
database = "{database}"
table = "events"
create_schema = true
request_timeout_ms = 10000
retry_initial_backoff_ms = 100
retry_max_backoff_ms = 2000

[metrics]
listen = "127.0.0.1:0"
"#,
        topic = names.topic,
        group = names.group,
        bad = names.bad,
        database = names.database,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A running loader and its log.
struct Loader {
    child: Child,
    log: PathBuf,
}

impl Loader {
    fn start(config: &Path, log: &Path, envs: &[(&str, &str)]) -> Loader {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
            .args(["load", "clickhouse", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,librdkafka=warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Loader {
            child,
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{why}; loader log:\n{}", self.log());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.fail(&format!("the loader did not exit within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; it must exit 0.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "exit {status}; log:\n{}", self.log());
    }

    /// Waits until `/metrics` holds `line` (a counter is bumped when a batch's turn comes, which
    /// may be a moment after its rows are visible in ClickHouse); fails with both otherwise.
    fn wait_for_metric(&mut self, line: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let metrics = self.http_get("/metrics");
            if metrics.contains(line) {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {line:?} after {within:?} in:\n{metrics}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the metrics endpoint, whose address the loader logs.
    fn http_get(&self, path: &str) -> String {
        use std::io::{Read as _, Write as _};
        let text = self.log();
        // The last run's address (a log may hold several runs).
        let addr = text
            .lines()
            .rev()
            .find(|l| l.contains("metrics endpoint listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{text}"))
            .to_owned();
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_topics(brokers: &str, names: &Names) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics = [
        NewTopic::new(&names.topic, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(&names.bad, 1, TopicReplication::Fixed(1)),
    ];
    let options =
        AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    let created = admin.create_topics(&topics, &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

async fn produce(brokers: &str, topic: &str, messages: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let key = format!("k{i}");
        let record = FutureRecord::to(topic).key(&key).payload(message.as_str());
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// The group's committed offsets on the topic, summed over partitions.
fn committed_total(brokers: &str, names: &Names) -> i64 {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &names.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition_offset(&names.topic, partition, Offset::Invalid)
            .unwrap();
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
        .sum()
}

/// Reads `n` bad rows from the bad topic (fails after a minute).
async fn read_bad_rows(brokers: &str, names: &Names, n: usize) -> Vec<serde_json::Value> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}-reader", names.group))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536")
        .create()
        .unwrap();
    consumer.subscribe(&[&names.bad]).unwrap();
    let mut rows = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows.len() < n {
        let Ok(message) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            panic!(
                "{} bad rows after a minute, expected {n}: {rows:?}",
                rows.len()
            );
        };
        if let Ok(message) = message {
            rows.push(serde_json::from_slice(message.payload().unwrap_or_default()).unwrap());
        }
    }
    // Nothing more comes.
    if let Ok(Ok(extra)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        panic!(
            "an unexpected bad row: {}",
            String::from_utf8_lossy(extra.payload().unwrap_or_default())
        );
    }
    rows
}

fn schema_of(row: &serde_json::Value) -> &str {
    row["schema"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn input_file_loads_every_event_typed_and_bad_documents_become_bad_rows() {
    let url = shared_clickhouse_url();
    let names = Names::new("file");
    let dir = tempfile::tempdir().unwrap();
    let (mut lines, eids) = corpus(300);
    let unstorable_line = unstorable(&lines[1]);
    lines.push("this is not json".into());
    lines.push(unstorable_line);
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = write_config(dir.path(), "127.0.0.1:1", &url, &names);

    let out = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
        .args(["load", "clickhouse", "--config"])
        .arg(&config)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("302 events read, 300 written, 1 unreadable, 1 rejected"),
        "{stderr}"
    );

    let db = &names.database;
    assert_eq!(distinct_events(&url, &names).await, 300);
    let sql =
        format!("SELECT uniqExact(event_id) FROM {db}.events WHERE page_title = 'Chelsea boots'");
    assert_eq!(query_u64(&url, &sql).await.unwrap(), eids.len() as u64);
    // Typed columns, an entity column and an extracted one, geo.
    let first = eids.iter().next().unwrap();
    let spot = [
        "toUInt64(collector_tstamp) = 1700000000 AND collector_tstamp_ms = 123",
        "domain_sessionidx = 3 AND br_cookies = 1 AND page_urlport = 443",
        "web_page_id = 'a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b'",
        "visitParamExtractString(visitParamExtractRaw(contexts, \
         'contexts_com_acme_product_entity_1'), 'sku') = 'BOOT-42'",
        "ua_useragent_family = 'Chrome'",
    ];
    for condition in spot {
        let sql = format!("SELECT count() FROM {db}.events FINAL WHERE {condition}");
        assert_eq!(query_u64(&url, &sql).await.unwrap(), 300, "{condition}");
    }
    let sql = format!(
        "SELECT count() FROM {db}.events FINAL WHERE event_id = 'c6ef3124-b53a-4b13-a233-000000000000' \
         AND geo_country = 'GB' AND abs(geo_latitude - 51.5142) < 1e-9 AND geo_longitude < 0"
    );
    assert_eq!(query_u64(&url, &sql).await.unwrap(), 1, "geo of {first}");
    // The dashboards' views count each page view once.
    let sql =
        format!("SELECT toUInt64(uniqExactMerge(page_views)) FROM {db}.events_page_views_hourly");
    assert_eq!(query_u64(&url, &sql).await.unwrap(), 300);

    let bad = std::fs::read_to_string(format!("{}.bad", input.display())).unwrap();
    let bad: Vec<serde_json::Value> = bad
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(schema_of(&bad[0]).contains("/loader_parsing_error/"));
    assert_eq!(bad[0]["data"]["payload"], "this is not json");
    assert!(schema_of(&bad[1]).contains("/loader_runtime_error/"));
    let error = bad[1]["data"]["failure"]["error"].as_str().unwrap();
    assert!(error.contains("dvce_created_tstamp 2200-01-01"), "{error}");
    execute(&url, &format!("DROP DATABASE IF EXISTS {db}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_written_twice_after_a_crash_is_one_row_per_event() {
    let url = shared_clickhouse_url();
    let kafka = OwnServices::start(&["kafka"]);
    let brokers = kafka.var("PLOWLINE_KAFKA_BROKERS");
    let names = Names::new("twice");
    create_topics(&brokers, &names).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &brokers, &url, &names);
    let log = dir.path().join("loader.log");
    let (lines, _) = corpus(1500);
    produce(&brokers, &names.topic, &lines).await;

    // Aborts right after its first write, before storing any offset.
    let mut loader = Loader::start(
        &config,
        &log,
        &[("PLOWLINE_LOADER_TEST_ABORT_AFTER_WRITE", "1")],
    );
    let status = loader.wait_exit(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the fault hook aborts; log:\n{}",
        loader.log()
    );
    let first_write = distinct_events(&url, &names).await;
    assert!(first_write > 0, "the first batch was written");
    assert_eq!(committed_total(&brokers, &names), 0, "nothing committed");

    let mut loader = Loader::start(&config, &log, &[]);
    wait_for_events(&url, &names, 1500, Duration::from_secs(120), &mut loader).await;
    loader.wait_for_metric(
        "plowline_loader_events_written_total{sink=\"clickhouse\"} 1500\n",
        Duration::from_secs(30),
    );
    assert!(loader.http_get("/healthz").starts_with("HTTP/1.1 200"));
    loader.stop();
    let db = &names.database;
    let raw = query_u64(&url, &format!("SELECT count() FROM {db}.events"))
        .await
        .unwrap();
    assert!(raw >= 1500, "{raw} rows");
    assert_eq!(distinct_events(&url, &names).await, 1500);
    assert_eq!(committed_total(&brokers, &names), 1500);
    execute(&url, &format!("DROP DATABASE IF EXISTS {db}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_and_refused_events_go_to_the_bad_topic_and_the_rest_lands() {
    let url = shared_clickhouse_url();
    let kafka = OwnServices::start(&["kafka"]);
    let brokers = kafka.var("PLOWLINE_KAFKA_BROKERS");
    let names = Names::new("bad");
    create_topics(&brokers, &names).await;
    let db = &names.database;
    // The schema, and a view that makes ClickHouse refuse any insert holding a "poison" page
    // title: a server-side rejection of one row's data.
    let statements = plowline_processor::sinks::clickhouse::schema::ddl(db, "events");
    for statement in statements {
        execute(&url, &statement).await;
    }
    execute(
        &url,
        &format!(
            "CREATE MATERIALIZED VIEW {db}.poison ENGINE = Memory AS \
             SELECT throwIf(page_title = 'poison') AS refused FROM {db}.events"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &brokers, &url, &names);
    let (mut lines, eids) = corpus(1000);
    let mut poison: serde_json::Value = serde_json::from_str(&lines[7]).unwrap();
    poison["event_id"] = "0badbad0-0000-4000-8000-000000000002".into();
    poison["page_title"] = "poison".into();
    lines.insert(500, "{not json".into());
    lines.insert(600, poison.to_string());
    let unstorable_line = unstorable(&lines[3]);
    lines.insert(700, unstorable_line);
    produce(&brokers, &names.topic, &lines).await;

    let mut loader = Loader::start(&config, &dir.path().join("loader.log"), &[]);
    let bad = read_bad_rows(&brokers, &names, 3).await;
    let sql = format!(
        "SELECT count() FROM {db}.events FINAL WHERE page_title = 'Chelsea boots' \
         AND event_id NOT LIKE '0badbad0%'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while query_u64(&url, &sql).await.unwrap_or(0) < eids.len() as u64 {
        if Instant::now() > deadline {
            loader.fail("the good events did not all land");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(query_u64(&url, &sql).await.unwrap(), 1000);
    let parsing: Vec<_> = bad
        .iter()
        .filter(|r| schema_of(r).contains("/loader_parsing_error/"))
        .collect();
    assert_eq!(parsing.len(), 1, "{bad:?}");
    assert_eq!(parsing[0]["data"]["payload"], "{not json");
    let runtime: Vec<&str> = bad
        .iter()
        .filter(|r| schema_of(r).contains("/loader_runtime_error/"))
        .map(|r| r["data"]["failure"]["error"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(runtime.len(), 2, "{bad:?}");
    assert!(runtime.iter().any(|e| e.contains("throwIf")), "{runtime:?}");
    assert!(
        runtime.iter().any(|e| e.contains("dvce_created_tstamp")),
        "{runtime:?}"
    );
    loader.wait_for_metric(
        "plowline_loader_bad_rows_total{sink=\"clickhouse\",type=\"loader_runtime_error\"} 2\n",
        Duration::from_secs(30),
    );
    loader.stop();
    assert_eq!(committed_total(&brokers, &names), 1003);
    execute(&url, &format!("DROP DATABASE IF EXISTS {db}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clickhouse_down_for_a_minute_holds_the_offsets_and_loses_nothing() {
    let mut own = OwnServices::start(&["kafka", "clickhouse"]);
    let brokers = own.var("PLOWLINE_KAFKA_BROKERS");
    let url = own.var("PLOWLINE_CLICKHOUSE_URL");
    let names = Names::new("down");
    create_topics(&brokers, &names).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &brokers, &url, &names);
    let (lines, _) = corpus(1200);
    let (before, after) = lines.split_at(600);

    let mut loader = Loader::start(&config, &dir.path().join("loader.log"), &[]);
    produce(&brokers, &names.topic, before).await;
    wait_for_events(&url, &names, 600, Duration::from_secs(120), &mut loader).await;
    // Auto-commit runs every 500 ms.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(committed_total(&brokers, &names), 600);

    own.run("stop", "clickhouse");
    produce(&brokers, &names.topic, after).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        loader.child.try_wait().unwrap().is_none(),
        "the loader keeps running while ClickHouse is down; log:\n{}",
        loader.log()
    );
    assert_eq!(
        committed_total(&brokers, &names),
        600,
        "offsets do not advance while ClickHouse is down"
    );
    let metrics = loader.http_get("/metrics");
    assert!(
        !metrics.contains("plowline_loader_write_retries_total{sink=\"clickhouse\"} 0\n"),
        "{metrics}"
    );

    own.run("start", "clickhouse");
    assert_eq!(own.var("PLOWLINE_CLICKHOUSE_URL"), url, "same port");
    wait_for_events(&url, &names, 1200, Duration::from_secs(120), &mut loader).await;
    loader.stop();
    assert_eq!(committed_total(&brokers, &names), 1200);
    assert!(loader.log().contains("succeeded after retries"));
}

/// Real bad rows: every malformed tracker line of `test_data/err` run through the pipeline,
/// `copies` times with different processing times (so each copy is a distinct bad row). Returns
/// the JSON lines and how many there are of each type.
fn pipeline_bad_rows(copies: i64) -> (Vec<String>, BTreeMap<String, u64>) {
    let config = Config::default().validate().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/err");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    let mut per_type = BTreeMap::new();
    for copy in 0..copies {
        let ctx = Context {
            format: &config.log_format,
            max_line_bytes: config.max_line_bytes,
            etl_tstamp_ms: 1_700_000_100_000 + copy * 1_000,
            enrich: &config.enrichments,
        };
        for path in &paths {
            for line in std::fs::read_to_string(path).unwrap().lines() {
                for row in process_line(line.as_bytes(), &ctx).bad_rows {
                    *per_type.entry(row.kind.name().to_owned()).or_insert(0) += 1;
                    let mut buf = Vec::new();
                    row.write_line(&mut buf);
                    lines.push(String::from_utf8(buf).unwrap().trim_end().to_owned());
                }
            }
        }
    }
    assert!(per_type.len() >= 3, "{per_type:?}");
    (lines, per_type)
}

/// Bad rows per type in the test's bad-rows table, under `FINAL` (none while the table does not
/// exist yet).
async fn bad_rows_per_type(url: &str, names: &Names) -> BTreeMap<String, u64> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct PerType {
        kind: String,
        n: u64,
    }
    let sql = format!(
        "SELECT type AS kind, count() AS n FROM {}.bad_rows FINAL GROUP BY kind",
        names.database
    );
    clickhouse::Client::default()
        .with_url(url)
        .with_compression(clickhouse::Compression::None)
        .query(&sql)
        .fetch_all::<PerType>()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.kind, r.n))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_from_the_pipeline_load_into_the_bad_rows_table_once_each() {
    let url = shared_clickhouse_url();
    let names = Names::new("badrows");
    let dir = tempfile::tempdir().unwrap();
    let (bad_lines, per_type) = pipeline_bad_rows(4);
    // A few enriched events on the same input: each document goes where it belongs.
    let (events, _) = corpus(5);
    let mut lines = bad_lines.clone();
    lines.extend(events);
    let input = dir.path().join("bad.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config = write_config(dir.path(), "127.0.0.1:1", &url, &names);

    let n = bad_lines.len();
    for run in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
            .args(["load", "clickhouse", "--config"])
            .arg(&config)
            .arg("--input")
            .arg(&input)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {stderr}");
        let expected = format!(
            "{} events read, {} written, 0 unreadable, 0 rejected",
            n + 5,
            n + 5
        );
        assert!(stderr.contains(&expected), "run {run}: {stderr}");
        assert!(
            stderr.contains(&format!("{n} bad rows loaded, 0 unloadable")),
            "run {run}: {stderr}"
        );
        // Loaded twice, still one row per bad row under FINAL.
        assert_eq!(bad_rows_per_type(&url, &names).await, per_type, "run {run}");
        assert_eq!(distinct_events(&url, &names).await, 5, "run {run}");
    }
    let bad = std::fs::read_to_string(format!("{}.bad", input.display())).unwrap_or_default();
    assert!(bad.is_empty(), "{bad}");

    // The columns of one row: the failure time, the processor, the payload, the hash.
    let db = &names.database;
    let first: serde_json::Value = serde_json::from_str(&bad_lines[0]).unwrap();
    let kind = schema_of(&first).split('/').nth(1).unwrap().to_owned();
    let sql = format!(
        "SELECT count() FROM {db}.bad_rows FINAL WHERE type = '{kind}' \
         AND schema = '{schema}' AND toUInt64(failure_tstamp) = 1700000100 \
         AND failure_tstamp_ms = 0 AND processor_artifact = 'plowline-processor' \
         AND row_id = '{id}' AND visitParamHas(failure, 'timestamp')",
        schema = schema_of(&first),
        id = plowline_processor::sinks::bad_rows::row_id(bad_lines[0].as_bytes()),
    );
    assert_eq!(query_u64(&url, &sql).await.unwrap(), 1, "{sql}");
    // The quickstart's report.
    let sql = format!("SELECT toUInt64(count()) FROM {db}.bad_rows FINAL");
    assert_eq!(query_u64(&url, &sql).await.unwrap(), n as u64);
    execute(&url, &format!("DROP DATABASE IF EXISTS {db}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loader_on_the_bad_topic_loads_it_and_its_own_bad_rows_once() {
    let url = shared_clickhouse_url();
    let kafka = OwnServices::start(&["kafka"]);
    let brokers = kafka.var("PLOWLINE_KAFKA_BROKERS");
    let names = Names::new("badtopic");
    create_topics(&brokers, &names).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &brokers, &url, &names);
    // As deployed: the loader reads the bad topic and produces its own bad rows to it.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("topic = \"{}\"", names.topic),
        &format!("topic = \"{}\"", names.bad),
    );
    std::fs::write(&config, text).unwrap();
    let (mut lines, mut per_type) = pipeline_bad_rows(2);
    // Not a bad row, not an event: it becomes a loader_parsing_error on the same topic, which
    // is read again and loaded like any bad row (once: it is a bad row now).
    lines.push("garbage on the bad topic".into());
    per_type.insert("loader_parsing_error".into(), 1);
    produce(&brokers, &names.bad, &lines).await;

    let mut loader = Loader::start(&config, &dir.path().join("loader.log"), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while bad_rows_per_type(&url, &names).await != per_type {
        if Instant::now() > deadline {
            let have = bad_rows_per_type(&url, &names).await;
            loader.fail(&format!(
                "bad rows per type {have:?}, expected {per_type:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nothing more comes: no bad row of a bad row.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bad_rows_per_type(&url, &names).await, per_type);
    let metrics = loader.http_get("/metrics");
    let loaded = lines.len(); // every message, the wrapped garbage instead of the garbage
    assert!(
        metrics.contains(&format!(
            "plowline_loader_bad_rows_loaded_total{{sink=\"clickhouse\"}} {loaded}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("plowline_loader_bad_rows_unloadable_total{sink=\"clickhouse\"} 0\n"),
        "{metrics}"
    );
    loader.stop();
    execute(&url, &format!("DROP DATABASE IF EXISTS {}", names.database)).await;
}
