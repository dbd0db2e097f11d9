//! The baseline of the shipper's whole-process benchmark (`scripts/bench-shipper.sh`): a minimal
//! librdkafka producer that reads one file and produces every line (without its `\n`) with the
//! shipper's default producer settings, waits for every delivery report and prints what it did.
//!
//! ```sh
//! cargo run --release -p plowline-shipper --example baseline_producer -- \
//!     --brokers 127.0.0.1:9092 --topic bench-baseline FILE
//! ```
//!
//! The librdkafka properties come from `plowline_shipper::kafka::client_config` applied to a
//! `[kafka]` section holding only `brokers` and `topic`, so they are the shipper's defaults
//! (acks=all, idempotence, lz4, linger.ms, queue bounds) by construction. `--headers` adds the
//! header the shipper sends with every line (`plowline.source`: host, path, file id, offset;
//! built by the shipper's own `kafka::source_value`), for like-for-like messages.
//!
//! Output, one line on stdout: `lines=N bytes=B seconds=S mb_per_s=X lines_per_s=Y failed=F`
//! (bytes count the `\n`s, as the shipper's `bytes_total` does). Exit status 1 if any delivery
//! failed.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use plowline_shipper::config::KafkaConfig;
use plowline_shipper::kafka::{client_config, source_prefix, source_value, SOURCE_HEADER};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

/// Produces every line of a file to a Kafka topic with the shipper's default settings.
#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap brokers, HOST:PORT.
    #[arg(long)]
    brokers: String,
    /// The topic (must exist).
    #[arg(long)]
    topic: String,
    /// Send the shipper's trace header (host, path, file id, offset) with every message.
    #[arg(long)]
    headers: bool,
    /// Print CPU seconds per thread name (from /proc/self/task) on stderr at the end.
    #[arg(long)]
    thread_cpu: bool,
    /// The file whose lines are produced.
    file: PathBuf,
}

/// Counts delivery reports.
#[derive(Debug, Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Counts>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let section = format!(
        "brokers = {}\ntopic = {}\n",
        toml::Value::String(args.brokers.clone()),
        toml::Value::String(args.topic.clone())
    );
    let kafka: KafkaConfig = toml::from_str(&section).context("building the [kafka] section")?;
    let counts = Arc::new(Counts::default());
    let producer: ThreadedProducer<Ctx> = client_config(&kafka)
        .create_with_context(Ctx(Arc::clone(&counts)))
        .context("cannot create the producer")?;

    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    // The shipper's source header for this file, with a file id of its size (`fp:<16 hex>`).
    let mut source = Vec::new();
    let source_prefix = source_prefix(
        &plowline_shipper::tailer::host_name(),
        &args.file.display().to_string(),
        "fp:0123456789abcdef",
    );
    let mut line = Vec::with_capacity(4096);
    let (mut lines, mut bytes, mut offset) = (0u64, 0u64, 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let value = line.strip_suffix(b"\n").unwrap_or(&line);
        loop {
            let mut record = BaseRecord::<(), [u8], ()>::to(&args.topic).payload(value);
            if args.headers {
                source_value(&source_prefix, offset, &mut source);
                record = record.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                    key: SOURCE_HEADER,
                    value: Some(&source[..]),
                }));
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's queue is full: let delivery reports come back.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => bail!("cannot queue a message: {error}"),
            }
        }
        lines += 1;
        bytes += n as u64;
        offset += n as u64;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("not every message was delivered within 300 s")?;
    while counts.acked.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < lines {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    let failed = counts.failed.load(Ordering::Relaxed);
    println!(
        "lines={lines} bytes={bytes} seconds={seconds:.3} mb_per_s={:.1} lines_per_s={:.0} failed={failed}",
        bytes as f64 / 1e6 / seconds,
        lines as f64 / seconds
    );
    if args.thread_cpu {
        eprintln!("threads: {}", thread_cpu());
    }
    if failed > 0 {
        bail!("{failed} deliveries failed");
    }
    Ok(())
}

/// CPU seconds (user + system) per thread name, from `/proc/self/task/*/stat`, assuming the usual
/// 100 clock ticks per second.
fn thread_cpu() -> String {
    let mut by_name = std::collections::BTreeMap::<String, u64>::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "unavailable".to_owned();
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close]
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .replace(' ', "_");
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        *by_name.entry(name).or_default() += ticks;
    }
    by_name
        .iter()
        .map(|(name, ticks)| format!("{name} {:.2}", *ticks as f64 / 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
