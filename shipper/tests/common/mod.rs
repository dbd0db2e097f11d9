//! Helpers for the black-box tests of `plow-shipper` against a real Tansu broker.
//!
//! Every test starts its own broker with `scripts/services.sh` under Cargo's target tmp dir
//! ([`Broker::in_memory`] for the quiet cases, [`Broker::own`] where the test stops it), so no test
//! depends on the state other tests left in a broker.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The repository's `scripts/services.sh`.
pub fn services_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// A broker: its services dir (for `services.sh topic`) and bootstrap address.
#[derive(Debug)]
pub struct Broker {
    pub dir: PathBuf,
    pub brokers: String,
    owned: bool,
}

impl Broker {
    /// A fresh broker for one test, stopped when the test ends, keeping its topics in memory
    /// (`memory://`: reads about ten times faster than from SQLite; nothing survives a broker
    /// restart, so tests that restart the broker use [`Broker::own`]). Each test gets its own
    /// broker: Tansu 0.6 can stall for minutes after other tests' consumers fetched large
    /// partitions, which would make these tests fail for reasons not their own.
    pub fn in_memory() -> Self {
        Self::start(&Self::fresh_dir(), "memory")
    }

    fn fresh_dir() -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("shipper-brokers")
            .join(format!("{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A broker of this test alone, in `dir`, with SQLite storage; stopped when dropped.
    pub fn own(dir: &Path) -> Self {
        Self::start(dir, "sqlite")
    }

    fn start(dir: &Path, storage: &str) -> Self {
        let out = Command::new(services_script())
            .arg("start")
            .arg(dir)
            .arg("kafka")
            .env("PLOWLINE_KAFKA_STORAGE", storage)
            .stderr(Stdio::inherit())
            .output()
            .expect("services.sh start");
        assert!(out.status.success(), "services.sh start failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let brokers = text
            .lines()
            .find_map(|l| l.strip_prefix("export PLOWLINE_KAFKA_BROKERS="))
            .expect("PLOWLINE_KAFKA_BROKERS in services.sh output")
            .trim()
            .to_owned();
        Self {
            dir: dir.to_owned(),
            brokers,
            owned: true,
        }
    }

    fn services(&self, args: &[&str]) {
        let status = Command::new(services_script())
            .args(&args[..1])
            .arg(&self.dir)
            .args(&args[1..])
            .stdout(Stdio::null())
            .status()
            .expect("services.sh");
        assert!(status.success(), "services.sh {args:?} failed");
    }

    /// Creates a topic.
    pub fn topic(&self, name: &str, partitions: u32) {
        self.services(&["topic", name, &partitions.to_string()]);
    }

    /// Stops the broker (own brokers only).
    pub fn stop(&self) {
        assert!(self.owned);
        self.services(&["stop"]);
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        assert!(self.owned);
        self.services(&["restart", "kafka"]);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.owned {
            let _ = Command::new(services_script())
                .arg("stop")
                .arg(&self.dir)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Serializes the tests of one test binary: Tansu with SQLite storage is slow enough that
/// several shippers and consumers at once make every test wait on the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A unique name for a test's topic.
/// One test's setup: serialized with the binary's other tests, with a broker, directory, topic
/// (`partitions` partitions) and config (`glob` under `logs/`, plus `extra` TOML) of its own.
pub struct Case {
    pub serial: std::sync::MutexGuard<'static, ()>,
    pub broker: Broker,
    pub dir: PathBuf,
    pub topic: String,
    pub config: PathBuf,
}

impl Case {
    pub fn new(name: &str, partitions: u32, glob: &str, extra: &str) -> Case {
        let serial = serial();
        let broker = Broker::in_memory();
        let dir = workdir(name);
        let topic = unique(name);
        broker.topic(&topic, partitions);
        let config = write_config(&dir, glob, &broker.brokers, &topic, extra);
        Case {
            serial,
            broker,
            dir,
            topic,
            config,
        }
    }
}

pub fn unique(name: &str) -> String {
    format!("shipper-{name}-{}-{}", std::process::id(), crate_nanos())
}

fn crate_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000
}

/// A test's working directory under Cargo's target tmp dir.
pub fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("shipper-tests")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).unwrap();
    dir
}

/// Writes a config for one input and returns its path.
pub fn write_config(dir: &Path, glob: &str, brokers: &str, topic: &str, extra: &str) -> PathBuf {
    let path = dir.join("shipper.toml");
    let text = format!(
        r#"
[[inputs]]
paths = ["{logs}/{glob}"]
read_from = "beginning"
{extra_input}

[kafka]
brokers = "{brokers}"
topic = "{topic}"
linger_ms = 5
retry_backoff_ms = 200
{extra_kafka}

[registry]
path = "{registry}"
flush_interval_ms = 200

[files]
scan_interval_ms = 200
poll_interval_ms = 20
rotated_close_idle_ms = 1000

[metrics]
listen = ""
"#,
        logs = dir.join("logs").display(),
        registry = dir.join("registry").display(),
        extra_input = extra.split("#kafka").next().unwrap_or(""),
        extra_kafka = extra.split("#kafka").nth(1).unwrap_or(""),
    );
    fs::write(&path, text).unwrap();
    path
}

/// A running `plow-shipper run`.
#[derive(Debug)]
pub struct Shipper {
    child: Child,
    pub log: PathBuf,
}

impl Shipper {
    /// Starts the shipper; its log goes to `dir/shipper-N.log`.
    pub fn start(dir: &Path, config: &Path) -> Self {
        let n = (0..)
            .find(|n| !dir.join(format!("shipper-{n}.log")).exists())
            .unwrap();
        let log = dir.join(format!("shipper-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_plow-shipper"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,plowline_shipper=debug")
            .env_remove("PLOWLINE_SHIPPER_KAFKA_BROKERS")
            .env_remove("PLOWLINE_SHIPPER_KAFKA_TOPIC")
            .env_remove("PLOWLINE_SHIPPER_REGISTRY_PATH")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// SIGTERM, then waits; asserts a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "shipper exited with {status}; log:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            assert!(Instant::now() < deadline, "shipper did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The shipper's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends lines to a file.
pub fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// `count` tracker-like lines tagged `tag`.
pub fn lines(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            format!(
                "1700000000.{i:03}\t127.0.0.1\t-\tGET\t/i?e=pv&tag={tag}&n={i}&url=https%3A%2F%2Fexample.com%2F\t200\t-\tMozilla/5.0"
            )
        })
        .collect()
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub value: String,
    pub headers: BTreeMap<String, String>,
}

impl Consumed {
    /// The `plowline.source` header, parsed: `{"host", "path", "file", "offset"}`.
    pub fn source(&self) -> serde_json::Value {
        let text = &self.headers["plowline.source"];
        serde_json::from_str(text).unwrap_or_else(|e| panic!("source header {text:?}: {e}"))
    }

    /// The source header's offset: where the line starts in its file.
    pub fn offset(&self) -> u64 {
        self.source()["offset"].as_u64().unwrap()
    }
}

/// Reads the whole topic from the beginning until `expected` messages have arrived and then
/// nothing more for `quiet`, or `timeout` passes.
pub fn consume(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-check"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Small fetches: Tansu 0.6 serves a fetch in one piece, and a large one stalls the broker.
        .set("fetch.max.bytes", "1048576")
        .set("message.max.bytes", "1048576")
        .set("max.partition.fetch.bytes", "65536")
        .create()
        .unwrap();
    let start = Instant::now();
    // A busy broker may take a while to answer; the overall timeout bounds the wait.
    let metadata = loop {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(m) => break m,
            Err(e) if start.elapsed() < timeout => eprintln!("consume: metadata: {e}"),
            Err(e) => panic!("no metadata for {topic}: {e}"),
        }
    };
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let quiet = Duration::from_secs(2);
    let mut last = Instant::now();
    let mut out = Vec::new();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.insert(
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Consumed {
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                });
                last = Instant::now();
            }
            // Transient while a broker restarts; the timeout bounds the wait.
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
        if out.len() >= expected && last.elapsed() >= quiet {
            return out;
        }
        if start.elapsed() > timeout {
            return out;
        }
    }
}

/// Counts of each value.
pub fn counts(messages: &[Consumed]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m.value.clone()).or_insert(0) += 1;
    }
    counts
}

/// Asserts every line is present exactly once and nothing else is.
pub fn assert_exactly_once(messages: &[Consumed], expected: &[String], shipper_log: &str) {
    let counts = counts(messages);
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !counts.contains_key(*l))
        .collect();
    let dups: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        missing.is_empty() && dups.is_empty() && messages.len() == expected.len(),
        "{} messages for {} lines; {} missing (first: {:?}); {} duplicated (first: {:?})\nshipper log:\n{}",
        messages.len(),
        expected.len(),
        missing.len(),
        missing.first(),
        dups.len(),
        dups.first(),
        tail(shipper_log)
    );
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[start..]
}

/// Waits until `cond` holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The registry's offsets by path.
pub fn registry_offsets(dir: &Path) -> BTreeMap<String, u64> {
    let text = fs::read_to_string(dir.join("registry/registry.json")).unwrap_or_default();
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return BTreeMap::new();
    };
    json["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").to_owned(),
                e["offset"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
