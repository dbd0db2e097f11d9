//! The whole pipeline, every component real: simulated visitors on the real Snowplow tracker
//! (`tests/tracker-client/visitors.mjs`, `@snowplow/node-tracker`) send hits at a steady rate to
//! a real nginx running plowline's config; `plow-shipper` tails its access log into a Tansu
//! broker of this test's own (`tracker-raw`); `plow-processor run` enriches (geo from the demo
//! database, referers with `shop.example.com` internal) into `tracker-enriched`/`tracker-bad`;
//! `plow-processor load clickhouse` writes into the real ClickHouse (a database of the test's
//! own, dropped at the end) and `plow-processor load elasticsearch` into the in-process
//! Elasticsearch test server.
//!
//! Asserted: every hit the tracker sent is exactly one row in ClickHouse under `FINAL` (no extra
//! rows) and exactly one indexed document in Elasticsearch (no extra ids), `tracker-bad` is empty,
//! and each event's fields are right: type, page URL, structured event category/action,
//! self-describing event name/vendor, geo country, browser family, referer medium and campaign
//! (every ClickHouse row, every tenth Elasticsearch document), and every pipeline process exits 0
//! on SIGTERM at the end.
//!
//! Measured (printed, not asserted): latency from the hit (`sent_ms`, when the tracker handed the
//! request to the socket) to the row being queryable in ClickHouse, by polling ClickHouse every
//! 250 ms for new `event_id`s (a row's time is the start of the first poll that returned it: a
//! SELECT reads the parts that exist when it starts, so the row was queryable by then and at most
//! one poll interval earlier); and to the document being indexed in the
//! Elasticsearch test server (its own clock at indexing; searchable up to one refresh later).
//!
//! Sizes: `PLOWLINE_E2E_RATE` hits/s (default 2000) for `PLOWLINE_E2E_SECONDS` (default 15);
//! `PLOWLINE_E2E_BATCH_WAIT_MS` is the loaders' `batch.max_wait_ms` (default 200).
//! The binaries are those next to this test's executable (`target/<profile>/`, built by
//! `cargo test --workspace` or `cargo build --workspace --bins`), or in `PLOWLINE_E2E_BIN_DIR`.
//! `scripts/bench-e2e.sh` runs this test on release binaries for the benchmark.
//!
//! Needs nginx, Tansu and ClickHouse (`scripts/services.sh install`; `PLOWLINE_CLICKHOUSE_URL`
//! names the running ClickHouse), node and npm.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../collector/tests/support/mod.rs"]
mod support;

use plowline_es_test_server::{Options, TestServer};
use plowline_processor::enrichments::geo::writer::{city_database, Place};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

/// Partitions of `tracker-raw` and `tracker-enriched`.
const PARTITIONS: u32 = 2;
/// How often ClickHouse is polled for new rows.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Consumer settings every consumer of the test's broker gets: small fetches (Tansu 0.6 stalls
/// after big ones), and a short fetch wait (librdkafka's default is 500 ms).
const CONSUMER_OPTIONS: [(&str, &str); 3] = [
    ("fetch.max.bytes", "1048576"),
    ("max.partition.fetch.bytes", "65536"),
    ("fetch.wait.max.ms", "50"),
];
/// Hits sent (and waited for) before the measured run, so consumer-group joins and schema
/// creation are not counted as latency.
const WARM_UP_HITS: u32 = 50;

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The directory holding `plow-shipper` and `plow-processor`.
fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("PLOWLINE_E2E_BIN_DIR").map_or_else(
        || {
            // target/<profile>/deps/e2e-HASH → target/<profile>
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().to_owned()
        },
        PathBuf::from,
    );
    for bin in ["plow-shipper", "plow-processor", "plow-collector"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: run `cargo build --workspace --bins` (with --release for \
             target/release) first",
            dir.join(bin).display()
        );
    }
    dir
}

/// The repository's `scripts/services.sh`.
fn services_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh")
}

/// A Tansu broker of this test's own (memory storage), stopped when dropped.
struct Broker {
    dir: PathBuf,
    brokers: String,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let out = Command::new(services_script())
            .arg("start")
            .arg(dir)
            .arg("kafka")
            .env("PLOWLINE_KAFKA_STORAGE", "memory")
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/services.sh runs");
        assert!(
            out.status.success(),
            "scripts/services.sh start DIR kafka failed (scripts/services.sh install?)"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let brokers = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export PLOWLINE_KAFKA_BROKERS="))
            .unwrap_or_else(|| panic!("no PLOWLINE_KAFKA_BROKERS in {stdout}"))
            .trim()
            .to_owned();
        Broker {
            dir: dir.to_owned(),
            brokers,
        }
    }

    fn topic(&self, name: &str, partitions: u32) {
        let status = Command::new(services_script())
            .arg("topic")
            .arg(&self.dir)
            .args([name, &partitions.to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/services.sh topic {name}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new(services_script())
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A pipeline process, its stderr in `<dir>/<name>.log`; SIGTERM (then SIGKILL) when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
    terminated: bool,
}

impl Process {
    fn spawn(name: &'static str, bin: &Path, args: &[&str], dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Process {
            name,
            child,
            log,
            terminated: false,
        }
    }

    /// Sends SIGTERM (once).
    fn terminate(&mut self) {
        if !self.terminated {
            self.terminated = true;
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
    }

    /// Waits for the process to exit after [`Process::terminate`]: a clean shutdown exits 0.
    fn assert_clean_exit(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {within:?} after SIGTERM; its log ends:\n{}",
                self.name,
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM; its log ends:\n{}",
            self.name,
            tail(&self.log)
        );
    }

    /// Panics with the end of its log if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited with {status}; its log ends:\n{}",
                self.name,
                tail(&self.log)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The shared ClickHouse, through its HTTP interface.
#[derive(Clone)]
struct ClickHouse {
    url: String,
    http: reqwest::Client,
}

impl ClickHouse {
    fn new() -> ClickHouse {
        ClickHouse {
            url: std::env::var("PLOWLINE_CLICKHOUSE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            http: reqwest::Client::new(),
        }
    }

    /// Runs `sql` and returns the response body.
    async fn query(&self, sql: &str) -> String {
        let response = self
            .http
            .post(&self.url)
            .body(sql.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("ClickHouse at {}: {e} (PLOWLINE_CLICKHOUSE_URL?)", self.url)
            });
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{sql}\n→ {status}: {body}");
        body
    }
}

/// Drops the test's database when the test ends, however it ends.
struct DropDatabase {
    clickhouse: ClickHouse,
    database: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let clickhouse = self.clickhouse.clone();
        let sql = format!("DROP DATABASE IF EXISTS {}", self.database);
        // Own thread and runtime: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(clickhouse.query(&sql));
        })
        .join();
    }
}

/// One hit as the tracker client recorded it (`--out`).
#[derive(Debug, Clone)]
struct Sent {
    eid: String,
    sent_ms: i64,
    line: Value,
}

/// Reads the complete lines the tracker client appended to its `--out` file since last time.
struct SentReader {
    path: PathBuf,
    offset: usize,
}

impl SentReader {
    fn read_new(&mut self) -> Vec<Sent> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let Some(end) = bytes[self.offset.min(bytes.len())..]
            .iter()
            .rposition(|&b| b == b'\n')
        else {
            return Vec::new();
        };
        let chunk = &bytes[self.offset..self.offset + end + 1];
        self.offset += end + 1;
        chunk
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let line: Value = serde_json::from_slice(l).unwrap();
                assert_eq!(line["ok"], true, "the collector refused a hit: {line}");
                Sent {
                    eid: line["eid"].as_str().unwrap().to_owned(),
                    sent_ms: line["sent_ms"].as_i64().unwrap(),
                    line,
                }
            })
            .collect()
    }
}

/// Starts the tracker client: `hits` hits at `rate` per second, or as fast as nginx answers.
fn start_visitors(nginx: &support::Running, out: &Path, hits: u32, rate: Option<u32>) -> Child {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracker-client");
    if !client.join("node_modules/@snowplow/node-tracker").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&client)
            .status()
            .expect("npm is not installed: install Node.js 20+ with npm");
        assert!(status.success(), "npm ci in {} failed", client.display());
    }
    let mut command = Command::new("node");
    command
        .arg(client.join("visitors.mjs"))
        .args(["--endpoint", &format!("http://{}", nginx.addr)])
        .args(["--visitors", &(hits / 30).max(20).to_string()])
        .args(["--seed", "1"])
        .arg("--out")
        .arg(out);
    match rate {
        Some(rate) => command.args([
            "--rate",
            &rate.to_string(),
            "--duration-s",
            &(f64::from(hits) / f64::from(rate)).to_string(),
        ]),
        None => command.args(["--hits", &hits.to_string()]),
    };
    command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.with_extension("log")).unwrap())
        .spawn()
        .expect("node is not installed")
}

/// Waits for the tracker client and checks that it sent `hits` hits.
fn finish_visitors(mut child: Child, out: &Path) {
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(out.with_extension("log")).unwrap_or_default();
    assert!(
        status.success(),
        "the tracker client failed ({status}):\n{log}"
    );
    eprintln!("tracker client:\n{log}");
}

/// Percentiles of a list of latencies, in ms.
fn summary(mut values: Vec<i64>) -> String {
    if values.is_empty() {
        return "no values".into();
    }
    values.sort_unstable();
    let at =
        |p: f64| values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1];
    format!(
        "n={} p50={} ms p90={} ms p99={} ms max={} ms",
        values.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        values[values.len() - 1]
    )
}

/// The rows of the test's table that became queryable, by polling.
struct Poller {
    clickhouse: ClickHouse,
    table: String,
    /// event_id → start of the first poll that returned it (ms since the epoch).
    seen_ms: HashMap<String, i64>,
    /// event_id → its `etl_tstamp`: when the processor enriched it (ms since the epoch), which
    /// splits the latency into upstream (shipper, broker, processor) and the loader's part.
    enriched_ms: HashMap<String, i64>,
}

impl Poller {
    /// Polls once for rows whose `etl_tstamp` is at least `since_ms` (floored to seconds). A row
    /// it returns is stamped with the poll's start: a SELECT reads the parts that exist when it
    /// starts, so the row was queryable by then (and not at the previous poll's start).
    async fn poll(&mut self, since_ms: i64) {
        let since_s = since_ms.div_euclid(1000);
        let at = now_ms();
        let body = self
            .clickhouse
            .query(&format!(
                "SELECT event_id, toUInt64(etl_tstamp) * 1000 + ifNull(etl_tstamp_ms, 0) FROM {} \
                 WHERE etl_tstamp >= toDateTime({since_s}) FORMAT TabSeparated",
                self.table
            ))
            .await;
        for line in body.lines() {
            let (eid, etl_ms) = line.split_once('\t').expect("two columns");
            if !self.seen_ms.contains_key(eid) {
                self.seen_ms.insert(eid.to_owned(), at);
                let etl_ms = etl_ms.parse().expect("etl_tstamp in ms");
                self.enriched_ms.insert(eid.to_owned(), etl_ms);
            }
        }
    }
}

/// Sends `hits` (at `rate`/s, or as fast as possible) and polls ClickHouse until every one of
/// them is queryable there and indexed in Elasticsearch, or `patience` after the last hit.
async fn send_and_follow(
    nginx: &support::Running,
    out: &Path,
    hits: u32,
    rate: Option<u32>,
    poller: &mut Poller,
    es: &TestServer,
    processes: &mut [Process],
) -> Vec<Sent> {
    let mut child = start_visitors(nginx, out, hits, rate);
    let mut reader = SentReader {
        path: out.to_owned(),
        offset: 0,
    };
    let mut sent = Vec::new();
    // Hits known to be sent and not seen in ClickHouse yet: eid → sent_ms.
    let mut pending: HashMap<String, i64> = HashMap::new();
    let mut client_done: Option<Instant> = None;
    let patience = Duration::from_secs(180);
    loop {
        let started = Instant::now();
        let poll_start = now_ms();
        for hit in reader.read_new() {
            pending.insert(hit.eid.clone(), hit.sent_ms);
            sent.push(hit);
        }
        // A row's etl_tstamp is after its hit was logged, which is after it was sent (known
        // pending hits) or after this file read (hits not in the file yet); 2 s of margin.
        let oldest = pending.values().copied().min().unwrap_or(poll_start);
        poller.poll(oldest.min(poll_start) - 2000).await;
        pending.retain(|eid, _| !poller.seen_ms.contains_key(eid));
        for process in processes.iter_mut() {
            process.assert_running();
        }
        if client_done.is_none() {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the tracker client failed ({status}): {}",
                    tail(&out.with_extension("log"))
                );
                client_done = Some(Instant::now());
                continue; // read the rest of the file
            }
        }
        if let Some(done) = client_done {
            let indexed = sent.iter().filter(|s| es.times_indexed(&s.eid) > 0).count();
            if pending.is_empty() && indexed == sent.len() {
                break;
            }
            assert!(
                done.elapsed() < patience,
                "{} of {} hits not in ClickHouse and {} not in Elasticsearch {patience:?} after \
                 the last hit; logs:\n{}",
                pending.len(),
                sent.len(),
                sent.len() - indexed,
                processes
                    .iter()
                    .map(|p| format!("--- {}\n{}", p.name, tail(&p.log)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(POLL_INTERVAL.saturating_sub(started.elapsed())).await;
    }
    finish_visitors(child, out);
    assert_eq!(
        sent.len(),
        hits as usize,
        "hits the tracker client recorded"
    );
    sent
}

/// Every message of a topic (from the beginning up to its end now).
fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false");
    for (key, value) in CONSUMER_OPTIONS {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Offset(low))
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (messages.len() as i64) < remaining && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            messages.push(message.payload().unwrap_or_default().to_vec());
        }
    }
    assert_eq!(
        messages.len() as i64,
        remaining,
        "messages read from {topic}"
    );
    messages
}

/// The ua-parser browser family of each simulated browser.
fn browser_family(browser: &str) -> &'static str {
    match browser {
        "chrome_windows" => "Chrome",
        "safari_macos" => "Safari",
        "firefox_linux" => "Firefox",
        "edge_windows" => "Edge",
        "iphone_safari" | "ipad_safari" => "Mobile Safari",
        "android_chrome" => "Chrome Mobile",
        "googlebot" => "Googlebot",
        other => panic!("unknown simulated browser {other}"),
    }
}

/// The referer medium of a simulated referrer URL.
fn referer_medium(refr: &str) -> Option<&'static str> {
    let host = refr.split("://").nth(1)?.split(['/', '?']).next()?;
    Some(match host {
        "shop.example.com" => "internal",
        "mail.google.com" => "email",
        "www.facebook.com" | "l.facebook.com" | "t.co" | "twitter.com" => "social",
        h if h.starts_with("www.google.") || h == "www.bing.com" => "search",
        other => panic!("unexpected simulated referrer host {other}"),
    })
}

/// A query parameter of a URL.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace('+', " "))
    })
}

/// Checks one stored event (ClickHouse row or Elasticsearch document) against what was sent.
fn check_fields(store: &str, got: &Value, sent: &Value) {
    let text = |k: &str| got.get(k).and_then(Value::as_str).map(str::to_owned);
    let want = |k: &str| sent.get(k).and_then(Value::as_str).map(str::to_owned);
    let ctx = format!("{store}: sent {sent}\ngot {got}");
    let event = match sent["e"].as_str().unwrap() {
        "pv" => "page_view",
        "pp" => "page_ping",
        "se" => "struct",
        "ue" => "unstruct",
        other => panic!("unexpected e={other}"),
    };
    assert_eq!(text("event").as_deref(), Some(event), "{ctx}");
    assert_eq!(text("page_url"), want("url"), "{ctx}");
    assert_eq!(text("se_category"), want("se_ca"), "{ctx}");
    assert_eq!(text("se_action"), want("se_ac"), "{ctx}");
    if let Some(schema) = want("schema") {
        let parts: Vec<&str> = schema.trim_start_matches("iglu:").split('/').collect();
        assert_eq!(text("event_vendor").as_deref(), Some(parts[0]), "{ctx}");
        assert_eq!(text("event_name").as_deref(), Some(parts[1]), "{ctx}");
    }
    assert_eq!(text("geo_country"), want("country"), "{ctx}");
    let browser = sent["browser"].as_str().unwrap();
    assert_eq!(
        text("br_family").as_deref(),
        Some(browser_family(browser)),
        "{ctx}"
    );
    let medium = want("refr").as_deref().and_then(referer_medium);
    assert_eq!(text("refr_medium").as_deref(), medium, "{ctx}");
    let url = want("url").unwrap();
    for (param, field) in [
        ("utm_medium", "mkt_medium"),
        ("utm_source", "mkt_source"),
        ("utm_campaign", "mkt_campaign"),
    ] {
        assert_eq!(text(field), query_param(&url, param), "{field}: {ctx}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_from_a_real_tracker_reach_clickhouse_and_elasticsearch_exactly_once_and_fast() {
    let rate = env_u32("PLOWLINE_E2E_RATE", 2000);
    let seconds = env_u32("PLOWLINE_E2E_SECONDS", 15);
    let batch_wait_ms = env_u32("PLOWLINE_E2E_BATCH_WAIT_MS", 200);
    let bins = bin_dir();

    let nginx = support::start_nginx("e2e");
    let dir = nginx.dir.clone();
    let broker = Broker::start(&dir.join("kafka-services"));
    broker.topic("tracker-raw", PARTITIONS);
    broker.topic("tracker-enriched", PARTITIONS);
    broker.topic("tracker-bad", 1);

    let places: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracker-client/geo-demo.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let places: Vec<Place> = serde_json::from_value(places["countries"].clone()).unwrap();
    let geo_db = dir.join("demo-city.mmdb");
    std::fs::write(&geo_db, city_database(&places)).unwrap();

    let es = TestServer::start(Options::default()).unwrap();
    let clickhouse = ClickHouse::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let database = format!("plowline_e2e_{}_{nanos}", std::process::id());
    let database_guard = DropDatabase {
        clickhouse: clickhouse.clone(),
        database: database.clone(),
    };

    let brokers = &broker.brokers;
    let consumer_options: String = CONSUMER_OPTIONS
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let shipper_toml = write(
        "shipper.toml",
        format!(
            r#"
[[inputs]]
paths = ["{log}"]
read_from = "beginning"

[kafka]
brokers = "{brokers}"
topic = "tracker-raw"

[registry]
path = "{registry}"
flush_interval_ms = 200

[files]
scan_interval_ms = 200
poll_interval_ms = 20

[metrics]
listen = ""
"#,
            log = nginx.access_log.display(),
            registry = dir.join("shipper-registry").display(),
        ),
    );
    let processor_toml = write(
        "processor.toml",
        format!(
            r#"
[kafka]
brokers = "{brokers}"
input_topic = "tracker-raw"
good_topic = "tracker-enriched"
bad_topic = "tracker-bad"
group = "e2e-processor"

[kafka.librdkafka]
{consumer_options}
[metrics]
listen = "127.0.0.1:0"

[enrichments.referer]
internal_domains = ["shop.example.com"]

[enrichments.geo]
database = "{geo}"
"#,
            geo = geo_db.display(),
        ),
    );
    let loader_toml = |sink: &str, section: String| {
        write(
            &format!("load-{sink}.toml"),
            format!(
                r#"
[kafka]
brokers = "{brokers}"
topic = "tracker-enriched"
group = "e2e-{sink}"
bad_topic = "tracker-bad"

[kafka.librdkafka]
{consumer_options}
[batch]
max_wait_ms = {batch_wait_ms}

{section}
[metrics]
listen = "127.0.0.1:0"
"#
            ),
        )
    };
    let clickhouse_toml = loader_toml(
        "clickhouse",
        format!(
            "[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\ntable = \"events\"\n\
             create_schema = true\n",
            clickhouse.url
        ),
    );
    let elasticsearch_toml = loader_toml(
        "elasticsearch",
        format!(
            "[elasticsearch]\nendpoints = [\"{}\"]\nindex_prefix = \"tracker-events\"\n",
            es.url()
        ),
    );

    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let mut processes = vec![
        Process::spawn(
            "plow-shipper",
            &bins.join("plow-shipper"),
            &["run", "--config", &path(&shipper_toml)],
            &dir,
        ),
        Process::spawn(
            "plow-processor",
            &bins.join("plow-processor"),
            &["run", "--config", &path(&processor_toml)],
            &dir,
        ),
        Process::spawn(
            "load-clickhouse",
            &bins.join("plow-processor"),
            &["load", "clickhouse", "--config", &path(&clickhouse_toml)],
            &dir,
        ),
        Process::spawn(
            "load-elasticsearch",
            &bins.join("plow-processor"),
            &[
                "load",
                "elasticsearch",
                "--config",
                &path(&elasticsearch_toml),
            ],
            &dir,
        ),
    ];
    let mut poller = Poller {
        clickhouse: clickhouse.clone(),
        table: format!("{database}.events"),
        seen_ms: HashMap::new(),
        enriched_ms: HashMap::new(),
    };
    // The loader creates the table; wait for it before polling.
    let deadline = Instant::now() + Duration::from_secs(60);
    while clickhouse
        .query(&format!("EXISTS TABLE {database}.events"))
        .await
        .trim()
        != "1"
    {
        for process in &mut processes {
            process.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "no table {database}.events after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Warm-up: consumer groups joined, schema and index template in place.
    let warm_started = Instant::now();
    let mut sent = send_and_follow(
        &nginx,
        &dir.join("warm-up.ndjson"),
        WARM_UP_HITS,
        None,
        &mut poller,
        &es,
        &mut processes,
    )
    .await;
    eprintln!(
        "warm-up: {WARM_UP_HITS} hits through the pipeline in {:.1} s",
        warm_started.elapsed().as_secs_f64()
    );

    // The measured run.
    let hits = rate * seconds;
    let run_started = Instant::now();
    let measured = send_and_follow(
        &nginx,
        &dir.join("sent.ndjson"),
        hits,
        Some(rate),
        &mut poller,
        &es,
        &mut processes,
    )
    .await;
    eprintln!(
        "{hits} hits at {rate}/s: all queryable in ClickHouse and indexed in Elasticsearch \
         {:.1} s after the first was sent",
        run_started.elapsed().as_secs_f64()
    );
    let first_indexed = es.first_indexed_ms();
    // (seconds into the run, to ClickHouse, to Elasticsearch) per hit.
    let first_sent = measured.iter().map(|s| s.sent_ms).min().unwrap();
    // Per hit: the second it was sent in (from the first), then its latency to ClickHouse, to
    // Elasticsearch, and to the processor's enrichment.
    let latencies: Vec<[i64; 4]> = measured
        .iter()
        .map(|s| {
            [
                (s.sent_ms - first_sent) / 1000,
                poller.seen_ms[&s.eid] - s.sent_ms,
                first_indexed[&s.eid] as i64 - s.sent_ms,
                poller.enriched_ms[&s.eid] - s.sent_ms,
            ]
        })
        .collect();
    let column = |of: &dyn Fn(&[i64; 4]) -> bool, i: usize| {
        summary(latencies.iter().filter(|l| of(l)).map(|l| l[i]).collect())
    };
    eprintln!(
        "latency hit → queryable in ClickHouse (polled every {} ms): {}",
        POLL_INTERVAL.as_millis(),
        column(&|_| true, 1)
    );
    eprintln!(
        "latency hit → indexed in Elasticsearch (test server's clock): {}",
        column(&|_| true, 2)
    );
    eprintln!(
        "latency hit → enriched by the processor (its etl_tstamp): {}",
        column(&|_| true, 3)
    );
    let last_second = latencies.iter().map(|l| l[0]).max().unwrap();
    for start in (0..=last_second).step_by(10) {
        let window = |l: &[i64; 4]| (start..start + 10).contains(&l[0]);
        eprintln!(
            "  hits sent {start}-{} s: ClickHouse {}; Elasticsearch {}; enriched {}",
            start + 10,
            column(&window, 1),
            column(&window, 2),
            column(&window, 3)
        );
    }
    sent.extend(measured);
    let checking = Instant::now();

    // Exactly once, with the right fields, in ClickHouse.
    let by_eid: BTreeMap<&str, &Value> = sent.iter().map(|s| (s.eid.as_str(), &s.line)).collect();
    assert_eq!(
        by_eid.len(),
        sent.len(),
        "event ids the tracker sent are unique"
    );
    let rows = clickhouse
        .query(&format!(
            "SELECT event_id, event, page_url, se_category, se_action, event_vendor, event_name, \
             geo_country, br_family, refr_medium, mkt_medium, mkt_source, mkt_campaign \
             FROM {database}.events FINAL FORMAT JSONEachRow"
        ))
        .await;
    let mut rows_per_eid: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows.lines() {
        let row: Value = serde_json::from_str(row).unwrap();
        let eid = row["event_id"].as_str().unwrap().to_owned();
        let sent = by_eid
            .get(eid.as_str())
            .unwrap_or_else(|| panic!("a row no hit sent: {row}"));
        check_fields("ClickHouse", &row, sent);
        *rows_per_eid.entry(eid).or_default() += 1;
    }
    let not_once: Vec<_> = by_eid
        .keys()
        .filter(|eid| rows_per_eid.get(**eid) != Some(&1))
        .take(10)
        .map(|eid| (eid, rows_per_eid.get(*eid).copied().unwrap_or(0)))
        .collect();
    assert!(
        not_once.is_empty(),
        "ClickHouse rows per event (FINAL), for events not there once: {not_once:?}"
    );
    assert_eq!(rows_per_eid.len(), sent.len(), "ClickHouse rows (FINAL)");
    let raw_rows = clickhouse
        .query(&format!("SELECT count() FROM {database}.events"))
        .await;
    eprintln!(
        "ClickHouse: {} rows under FINAL, {} before merging replacements",
        rows_per_eid.len(),
        raw_rows.trim()
    );

    // Exactly once, with the right fields, in Elasticsearch.
    let stats = es.stats();
    let not_once: Vec<_> = by_eid
        .keys()
        .filter(|eid| stats.indexed.get(**eid) != Some(&1))
        .take(10)
        .map(|eid| (eid, stats.indexed.get(*eid).copied().unwrap_or(0)))
        .collect();
    assert!(
        not_once.is_empty(),
        "times indexed in Elasticsearch, for events not indexed once: {not_once:?}"
    );
    assert_eq!(
        stats.indexed.len(),
        sent.len(),
        "ids indexed in Elasticsearch"
    );
    assert_eq!(es.count("tracker-events*"), sent.len(), "documents stored");
    let indices = es.index_names();
    let mut checked = 0;
    for (eid, sent) in by_eid.iter().step_by(10) {
        let doc = indices
            .iter()
            .find_map(|index| es.document(index, eid))
            .unwrap_or_else(|| panic!("no document {eid} in {indices:?}"));
        check_fields("Elasticsearch", &doc, sent);
        checked += 1;
    }
    eprintln!(
        "Elasticsearch: {} documents in {indices:?}, {} bulk requests, {} conflicts (re-deliveries); \
         fields checked on {checked}",
        stats.items_created, stats.bulk_requests, stats.items_conflicts
    );

    // No bad rows from the processor or the loaders.
    let bad = read_topic(brokers, "tracker-bad");
    assert!(
        bad.is_empty(),
        "{} bad rows, the first: {}",
        bad.len(),
        String::from_utf8_lossy(&bad[0])
    );

    // Every event type and enrichment showed up (the checks above ran on each).
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sent {
        *kinds.entry(s.line["e"].as_str().unwrap()).or_default() += 1;
    }
    for e in ["pv", "pp", "se", "ue"] {
        assert!(kinds.contains_key(e), "no {e} hit in {kinds:?}");
    }
    eprintln!("hits by type: {kinds:?}");

    eprintln!(
        "checks passed in {:.1} s; stopping",
        checking.elapsed().as_secs_f64()
    );
    let stopping = Instant::now();
    for process in &mut processes {
        process.terminate();
    }
    for process in &mut processes {
        process.assert_clean_exit(Duration::from_secs(30));
    }
    drop(processes);
    eprintln!(
        "pipeline stopped in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    drop(nginx);
    eprintln!("nginx stopped at {:.1} s", stopping.elapsed().as_secs_f64());
    drop(broker);
    eprintln!(
        "broker stopped at {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    drop(es);
    eprintln!(
        "Elasticsearch test server stopped at {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    drop(database_guard);
    eprintln!(
        "ClickHouse database dropped at {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
}
