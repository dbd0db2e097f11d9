//! The loader runtime, shared by every sink: batches of enriched events from Kafka (a consumer
//! group) or from an NDJSON file, written with a [`Sink`], bad rows for what the sink refused.
//!
//! # Invariants
//!
//! - **An input offset is stored only after its batch was written and the bad rows of that
//!   batch were acknowledged by the broker** (`enable.auto.offset.store=false`; librdkafka's
//!   auto-commit commits only stored offsets). At most [`IN_FLIGHT`] batches are written at
//!   once, each by its own clone of the sink, and they finish in order; [`OffsetTracker`]
//!   gives the offset to store per partition.
//! - **Nothing is dropped**: every document is written, or becomes a `loader_parsing_error` /
//!   `loader_runtime_error` bad row, each counted. A bad row that fails to be produced is
//!   produced again with backoff until the broker acknowledges it (the offsets wait).
//! - **Bad rows are loaded, and never loop**: a document that is a bad row (read from
//!   `tracker-bad`, or found on any topic) is stored in the sink's bad-row table or indices. If
//!   the sink refuses a bad row that the processor made, it is wrapped *once* into a
//!   `loader_runtime_error` (whose payload is the refused row as text, so the wrapper stores
//!   where the original did not, and the failure shows in the dashboards). A refused bad row
//!   that a loader made (`loader_*`, possibly such a wrapper) is not wrapped again: it is
//!   counted (`plowline_loader_bad_rows_unloadable_total`) and logged at ERROR with the reason
//!   and the document, so a loader reading its own bad topic cannot produce bad rows of bad
//!   rows forever.
//! - **Batches** close at `batch.max_events` events, `batch.max_bytes` bytes, or
//!   `batch.max_wait_ms` after their first event.
//! - **Clean shutdown** (SIGTERM/SIGINT): stop consuming, write the batch being filled, let the
//!   batches being written finish (together at most `kafka.shutdown_timeout_ms`), store their
//!   offsets, commit synchronously, exit.
//!
//! A test-only fault hook: when the environment variable `PLOWLINE_LOADER_TEST_ABORT_AFTER_WRITE`
//! is set, the process aborts (as `kill -9` would stop it) right after the first batch the sink
//! wrote, before any offset of it is stored. The tests use it to deliver a batch twice.

use std::future::Future;
use std::io::{BufRead, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesOrdered, StreamExt as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::config::{BatchLimits, LoaderSettings};
use super::{Doc, Origin, Outcome, Sink, SinkError};
use crate::badrow::{BadRow, BadRowType};
use crate::stream::metrics::{self, Exposition};
use crate::stream::{OffsetTracker, StreamError, Ticket};

/// The environment variable of the test-only fault hook (see the module doc).
const ABORT_AFTER_WRITE: &str = "PLOWLINE_LOADER_TEST_ABORT_AFTER_WRITE";
/// The first wait before producing a bad row again.
const PRODUCE_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two productions of a bad row.
const PRODUCE_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a loader stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// The sink stopped.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A Kafka client could not be created or subscribed, or the metrics endpoint could not
    /// listen: the same failures as the processor's streaming mode.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The input file or the bad-row file failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The loader's counters, served on `/metrics` as `plowline_loader_<name>_total{sink="…"}`.
#[derive(Debug)]
pub struct LoaderMetrics {
    sink: &'static str,
    /// Documents read (messages or lines).
    pub events_read: AtomicU64,
    /// Documents the sink stored (events and bad rows).
    pub events_written: AtomicU64,
    /// Bad rows (the input's, e.g. `tracker-bad`) stored in the sink's bad-row table or indices.
    pub bad_rows_loaded: AtomicU64,
    /// Bad rows made by a loader that the sink refused: logged at ERROR, not produced again.
    pub bad_rows_unloadable: AtomicU64,
    /// Bad rows, by type (`loader_parsing_error`, `loader_runtime_error`).
    pub bad_rows: [AtomicU64; 2],
    /// Batches written.
    pub batches: AtomicU64,
    /// Sink requests that failed transiently and were retried (counted by the sink).
    pub write_retries: Arc<AtomicU64>,
    /// Bad-row productions that failed and were retried.
    pub produce_errors: AtomicU64,
    /// Offsets stored for commit.
    pub offsets_stored: AtomicU64,
    /// Microseconds the sink spent writing batches, retries included (batches in flight
    /// overlap, so this can grow faster than the clock).
    pub write_micros: AtomicU64,
    /// False once shutdown has begun.
    pub healthy: AtomicBool,
}

impl LoaderMetrics {
    /// Fresh counters for `sink`, healthy.
    pub fn new(sink: &'static str) -> LoaderMetrics {
        LoaderMetrics {
            sink,
            events_read: AtomicU64::new(0),
            events_written: AtomicU64::new(0),
            bad_rows_loaded: AtomicU64::new(0),
            bad_rows_unloadable: AtomicU64::new(0),
            bad_rows: [AtomicU64::new(0), AtomicU64::new(0)],
            batches: AtomicU64::new(0),
            write_retries: Arc::new(AtomicU64::new(0)),
            produce_errors: AtomicU64::new(0),
            offsets_stored: AtomicU64::new(0),
            write_micros: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    fn bad_row(&self, kind: BadRowType) {
        let i = usize::from(kind == BadRowType::LoaderRuntimeError);
        self.bad_rows[i].fetch_add(1, Ordering::Relaxed);
    }

    /// What was done so far.
    pub fn summary(&self) -> Summary {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            read: load(&self.events_read),
            written: load(&self.events_written),
            unreadable: load(&self.bad_rows[0]),
            rejected: load(&self.bad_rows[1]),
            batches: load(&self.batches),
            bad_rows_loaded: load(&self.bad_rows_loaded),
            unloadable: load(&self.bad_rows_unloadable),
        }
    }
}

impl Exposition for LoaderMetrics {
    fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(2048);
        let sink = self.sink;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, values: &[(&str, u64)]| {
            let _ = writeln!(
                out,
                "# HELP plowline_loader_{name}_total {help}\n# TYPE plowline_loader_{name}_total counter"
            );
            for (labels, value) in values {
                let _ = writeln!(
                    out,
                    "plowline_loader_{name}_total{{sink=\"{sink}\"{labels}}} {value}"
                );
            }
        };
        counter(
            "events_read",
            "Enriched events read (messages or lines).",
            &[("", load(&self.events_read))],
        );
        counter(
            "events_written",
            "Events the sink stored.",
            &[("", load(&self.events_written))],
        );
        counter(
            "bad_rows_loaded",
            "Input bad rows stored in the sink's bad-row table or indices.",
            &[("", load(&self.bad_rows_loaded))],
        );
        counter(
            "bad_rows_unloadable",
            "Loader-made bad rows the sink refused: logged at ERROR, not produced again.",
            &[("", load(&self.bad_rows_unloadable))],
        );
        counter(
            "bad_rows",
            "Loader bad rows, by type.",
            &[
                (",type=\"loader_parsing_error\"", load(&self.bad_rows[0])),
                (",type=\"loader_runtime_error\"", load(&self.bad_rows[1])),
            ],
        );
        counter("batches", "Batches written.", &[("", load(&self.batches))]);
        counter(
            "write_retries",
            "Sink requests that failed for a transient reason and were retried.",
            &[("", load(&self.write_retries))],
        );
        counter(
            "produce_errors",
            "Bad-row productions that failed and were retried.",
            &[("", load(&self.produce_errors))],
        );
        counter(
            "offsets_stored",
            "Input offsets stored for commit after their batch was acknowledged.",
            &[("", load(&self.offsets_stored))],
        );
        let _ = writeln!(
            out,
            "# HELP plowline_loader_write_seconds_total Time the sink spent writing batches, retries \
             included; over batches_total, the mean time a batch takes to be stored.\n\
             # TYPE plowline_loader_write_seconds_total counter\n\
             plowline_loader_write_seconds_total{{sink=\"{sink}\"}} {:.6}",
            load(&self.write_micros) as f64 / 1e6
        );
        out
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Documents read.
    pub read: u64,
    /// Documents stored by the sink.
    pub written: u64,
    /// `loader_parsing_error` bad rows.
    pub unreadable: u64,
    /// `loader_runtime_error` bad rows.
    pub rejected: u64,
    /// Batches written.
    pub batches: u64,
    /// Input bad rows stored (included in `written`).
    pub bad_rows_loaded: u64,
    /// Loader-made bad rows the sink refused (logged, not produced again).
    pub unloadable: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events read, {} written, {} unreadable, {} rejected, {} batches, \
             {} bad rows loaded, {} unloadable",
            self.read,
            self.written,
            self.unreadable,
            self.rejected,
            self.batches,
            self.bad_rows_loaded,
            self.unloadable
        )
    }
}

/// A batch being filled.
#[derive(Debug, Default)]
struct Batch {
    docs: Vec<Doc>,
    bytes: usize,
}

impl Batch {
    /// Adds a copy of `json` (one allocation of its size).
    fn push(&mut self, json: &[u8], origin: Origin) {
        self.bytes += json.len();
        self.docs.push(Doc {
            json: json.to_vec(),
            origin,
        });
    }

    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.docs.len() >= limits.max_events || self.bytes >= limits.max_bytes
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether `json` is a bad row that a loader made (see the module doc: such a row is never
/// wrapped again).
fn is_loader_bad_row(json: &[u8]) -> bool {
    super::bad_rows::recognise(json).is_some_and(|row| row.is_from_a_loader())
}

/// Writes `batch` with `sink`, counts the outcomes, and returns the bad rows to deliver.
async fn write_batch<S: Sink>(
    sink: &mut S,
    batch: &[Doc],
    metrics: &LoaderMetrics,
) -> Result<Vec<BadRow>, SinkError> {
    let started = std::time::Instant::now();
    let outcomes = sink.write(batch).await?;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    metrics.write_micros.fetch_add(micros, Ordering::Relaxed);
    if std::env::var_os(ABORT_AFTER_WRITE).is_some() {
        tracing::error!("{ABORT_AFTER_WRITE} is set: aborting after a write, before its offsets");
        std::process::abort();
    }
    let now = now_ms();
    let mut bad_rows = Vec::new();
    let mut written = 0;
    let mut loaded = 0;
    for (doc, outcome) in batch.iter().zip(outcomes) {
        let row = match outcome {
            Outcome::Written => {
                written += 1;
                continue;
            }
            Outcome::BadRowWritten => {
                written += 1;
                loaded += 1;
                continue;
            }
            Outcome::Rejected(_) | Outcome::Unreadable(_) if is_loader_bad_row(&doc.json) => {
                metrics.bad_rows_unloadable.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    sink = sink.name(),
                    origin = ?doc.origin,
                    reason = ?outcome,
                    document = %String::from_utf8_lossy(&doc.json),
                    "a loader bad row was refused by the sink; not produced again"
                );
                continue;
            }
            Outcome::Rejected(reason) => {
                tracing::debug!(origin = ?doc.origin, %reason, "rejected by the sink");
                BadRow::loader_runtime_error(sink.name(), &doc.json, &reason, now)
            }
            Outcome::Unreadable(reasons) => {
                tracing::debug!(origin = ?doc.origin, ?reasons, "unreadable");
                BadRow::loader_parsing_error(&doc.json, &reasons, now)
            }
        };
        metrics.bad_row(row.kind);
        bad_rows.push(row);
    }
    metrics.events_written.fetch_add(written, Ordering::Relaxed);
    metrics.bad_rows_loaded.fetch_add(loaded, Ordering::Relaxed);
    metrics.batches.fetch_add(1, Ordering::Relaxed);
    if !bad_rows.is_empty() {
        tracing::info!(
            batch = batch.len(),
            bad_rows = bad_rows.len(),
            "batch written; some events became bad rows"
        );
    }
    Ok(bad_rows)
}

/// Loads an NDJSON file of enriched events (`input`, one per line) with `sink`; bad rows go to
/// `bad`, one per line. `progress` is called after each batch with the bytes read so far.
///
/// Two batches are in flight (see [`IN_FLIGHT`]); outcomes and bad rows are handled in the
/// file's order.
pub async fn run_file<S: Sink + Clone>(
    sink: S,
    mut input: impl BufRead,
    bad: &mut dyn Write,
    limits: BatchLimits,
    metrics: &LoaderMetrics,
    mut progress: impl FnMut(u64, &Summary),
) -> Result<Summary, LoaderError> {
    let mut idle = sinks(sink).await?;
    let write = |mut sink: S, batch: Batch| async move {
        let written = write_batch(&mut sink, &batch.docs, metrics).await;
        (sink, written)
    };
    let mut in_flight = FuturesOrdered::new();
    let mut batch = Batch::default();
    let mut line_number = 0_u64;
    let mut bytes_read = 0_u64;
    let mut eof = false;
    let mut line = Vec::with_capacity(64 << 10);
    while !eof {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| LoaderError::Io {
                what: "cannot read the input".to_owned(),
                source,
            })?;
        bytes_read += n as u64;
        if n == 0 {
            eof = true;
        } else {
            line_number += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            metrics.events_read.fetch_add(1, Ordering::Relaxed);
            batch.push(&line, Origin::Line(line_number));
        }
        if batch.is_full(&limits) || (eof && !batch.docs.is_empty()) {
            let sink = idle
                .pop()
                .expect("a sink is idle: fewer batches are in flight");
            in_flight.push_back(write(sink, std::mem::take(&mut batch)));
        }
        // While reading, the oldest batch finishes when no sink is idle; at the end, all of them.
        while in_flight.len() == IN_FLIGHT || (eof && !in_flight.is_empty()) {
            let (sink, written) = in_flight.next().await.expect("a batch is in flight");
            idle.push(sink);
            write_bad_lines(bad, &written?)?;
            progress(bytes_read, &metrics.summary());
        }
    }
    Ok(metrics.summary())
}

/// How many batches a loader writes at once, each with its own clone of the sink: while the
/// sink finishes one (ClickHouse writes its parts and runs the views, Elasticsearch answers the
/// `_bulk`), the next is read, encoded and streamed. They finish in the order they started, so
/// a loader holds about two batches in memory.
const IN_FLIGHT: usize = 2;

/// Prepares `sink` and clones it for each batch in flight.
async fn sinks<S: Sink + Clone>(mut sink: S) -> Result<Vec<S>, SinkError> {
    sink.prepare().await?;
    Ok(vec![sink; IN_FLIGHT])
}

/// Writes `rows` to `bad`, one line each.
fn write_bad_lines(bad: &mut dyn Write, rows: &[BadRow]) -> Result<(), LoaderError> {
    let mut buf = Vec::new();
    for row in rows {
        row.write_line(&mut buf);
    }
    bad.write_all(&buf)
        .and_then(|()| bad.flush())
        .map_err(|source| LoaderError::Io {
            what: "cannot write bad rows".to_owned(),
            source,
        })
}

/// A batch [`run_kafka`] is writing: its sink comes back with the batch's tickets once the
/// batch is written and its bad rows are acknowledged.
type InFlight<'a, S> = Pin<Box<dyn Future<Output = (S, Vec<Ticket>, Result<(), SinkError>)> + 'a>>;

/// The consumer's context: forgets revoked partitions' unwritten messages.
struct LoaderContext {
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for LoaderContext {}

impl ConsumerContext for LoaderContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let mut tracker = lock(&self.tracker);
                for element in partitions.elements() {
                    tracker.revoke(element.topic(), element.partition());
                }
                tracing::info!(partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    tracker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Consumes `kafka.topic` in the consumer group and loads it with `sink` until `shutdown`
/// completes; see the module doc for the guarantees. The metrics endpoint's address is logged
/// once it listens.
pub async fn run_kafka<S: Sink + Clone>(
    sink: S,
    settings: &LoaderSettings,
    metrics: Arc<LoaderMetrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Summary, LoaderError> {
    let kafka = &settings.kafka;
    let kafka_error = |what| StreamError::kafka(what, &kafka.brokers);
    let server = metrics::start(settings.metrics_listen, Arc::clone(&metrics)).await?;
    let mut idle = sinks(sink).await?;

    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &kafka.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    for (key, value) in &kafka.librdkafka {
        consumer_config.set(key, value);
        producer_config.set(key, value);
    }
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let consumer: StreamConsumer<LoaderContext> = consumer_config
        .create_with_context(LoaderContext {
            tracker: Arc::clone(&tracker),
        })
        .map_err(kafka_error("consumer"))?;
    let producer: FutureProducer = producer_config.create().map_err(kafka_error("producer"))?;
    consumer
        .subscribe(&[&kafka.topic])
        .map_err(kafka_error("subscribe"))?;
    tracing::info!(
        sink = settings.sink,
        brokers = %kafka.brokers,
        group = %settings.group,
        topic = %kafka.topic,
        bad = %kafka.bad_topic,
        "consuming"
    );

    let limits = settings.batch;
    let metrics = &*metrics;
    let write = |mut sink: S, batch: Batch, tickets: Vec<Ticket>| -> InFlight<'_, S> {
        let producer = &producer;
        let bad_topic = kafka.bad_topic.as_str();
        Box::pin(async move {
            let written = match write_batch(&mut sink, &batch.docs, metrics).await {
                Ok(bad_rows) => {
                    deliver_bad_rows(producer, bad_topic, &bad_rows, metrics).await;
                    Ok(())
                }
                Err(error) => Err(error),
            };
            (sink, tickets, written)
        })
    };
    let mut in_flight: FuturesOrdered<InFlight<'_, S>> = FuturesOrdered::new();
    let mut batch = Batch::default();
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    // Fill a batch while fewer than `IN_FLIGHT` are being written; start writing it when it is
    // full or its time is up; store a batch's offsets when it (and every batch before it) is done.
    loop {
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let full = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some((sink, done, written)) = in_flight.next() => {
                if let Err(error) = written {
                    server.abort();
                    return Err(error.into());
                }
                store_offsets(&consumer, &tracker, &done, metrics);
                idle.push(sink);
                false
            }
            () = wait => true,
            message = consumer.recv(), if in_flight.len() < IN_FLIGHT => match message {
                Ok(message) => {
                    tickets.push(lock(&tracker).begin(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                    ));
                    metrics.events_read.fetch_add(1, Ordering::Relaxed);
                    batch.push(
                        message.payload().unwrap_or_default(),
                        Origin::Kafka {
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                    );
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.max_wait);
                    batch.is_full(&limits)
                }
                Err(error) => {
                    tracing::warn!(%error, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    false
                }
            },
        };
        if full {
            let sink = idle
                .pop()
                .expect("a sink is idle: fewer batches are in flight");
            in_flight.push_back(write(
                sink,
                std::mem::take(&mut batch),
                std::mem::take(&mut tickets),
            ));
            deadline = None;
        }
    }

    // Shutdown: the batch being filled is written too; together they get `shutdown_timeout`.
    metrics.healthy.store(false, Ordering::Relaxed);
    if !batch.docs.is_empty() {
        let sink = idle
            .pop()
            .expect("a sink is idle: fewer batches are in flight");
        in_flight.push_back(write(sink, batch, tickets));
    }
    if !in_flight.is_empty() {
        tracing::info!(
            timeout_ms = settings.shutdown_timeout.as_millis() as u64,
            batches = in_flight.len(),
            "shutting down: waiting for the batches being written"
        );
    }
    let drain = async {
        while let Some((_, done, written)) = in_flight.next().await {
            written?;
            store_offsets(&consumer, &tracker, &done, metrics);
        }
        Ok::<(), SinkError>(())
    };
    let drained = tokio::time::timeout(settings.shutdown_timeout, drain).await;
    match drained {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            server.abort();
            return Err(error.into());
        }
        Err(_) => tracing::warn!(
            batches = in_flight.len(),
            "shutdown timeout: the batches being written will be read again after a restart"
        ),
    }

    lock(&tracker).revoke_all();
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => tracing::info!("offsets committed"),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
            tracing::info!("no new offsets to commit");
        }
        Err(error) => tracing::warn!(%error, "final commit failed; the last auto-commit stands"),
    }
    consumer.unsubscribe();
    server.abort();
    let summary = metrics.summary();
    tracing::info!(%summary, "stopped");
    Ok(summary)
}

/// Stores the offsets that the finished `tickets` unlock.
fn store_offsets(
    consumer: &StreamConsumer<LoaderContext>,
    tracker: &Mutex<OffsetTracker>,
    tickets: &[Ticket],
    metrics: &LoaderMetrics,
) {
    let mut tracker = lock(tracker);
    let mut list = TopicPartitionList::new();
    for ticket in tickets {
        if let Some(next) = tracker.finish(ticket) {
            let added = match list.find_partition(&ticket.topic, ticket.partition) {
                Some(mut element) => element.set_offset(Offset::Offset(next)),
                None => {
                    list.add_partition_offset(&ticket.topic, ticket.partition, Offset::Offset(next))
                }
            };
            if let Err(error) = added {
                tracing::warn!(%error, "cannot build the offset list");
            }
        }
    }
    if list.count() == 0 {
        return;
    }
    match consumer.store_offsets(&list) {
        Ok(()) => {
            metrics
                .offsets_stored
                .fetch_add(list.count() as u64, Ordering::Relaxed);
        }
        // Revoked meanwhile: not ours to store any more.
        Err(error) => tracing::debug!(%error, "offsets not stored"),
    }
}

/// Produces `rows` to `topic` and waits for every acknowledgement, producing a row again (with
/// backoff) after each failure, for as long as it takes.
async fn deliver_bad_rows(
    producer: &FutureProducer,
    topic: &str,
    rows: &[BadRow],
    metrics: &LoaderMetrics,
) {
    let payloads: Vec<Vec<u8>> = rows
        .iter()
        .map(|row| {
            let mut line = Vec::new();
            row.write_line(&mut line);
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            line
        })
        .collect();
    let mut pending: Vec<(&[u8], Option<rdkafka::producer::DeliveryFuture>)> =
        payloads.iter().map(|p| (p.as_slice(), None)).collect();
    let mut backoff = PRODUCE_FIRST_BACKOFF;
    while !pending.is_empty() {
        for (payload, delivery) in &mut pending {
            if delivery.is_none() {
                match producer.send_result(FutureRecord::<(), [u8]>::to(topic).payload(payload)) {
                    Ok(future) => *delivery = Some(future),
                    Err((error, _)) => {
                        metrics.produce_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, "cannot enqueue a bad row");
                    }
                }
            }
        }
        let mut failed = Vec::new();
        for (payload, delivery) in pending {
            let error = match delivery {
                Some(delivery) => match delivery.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err((error, _))) => Some(error.to_string()),
                    Err(_) => Some("the producer dropped the delivery report".to_owned()),
                },
                None => None,
            };
            if let Some(error) = error {
                metrics.produce_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, topic, "bad-row delivery failed; retrying");
            }
            failed.push((payload, None));
        }
        pending = failed;
        if !pending.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(PRODUCE_MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that refuses documents containing `bad`, and reads nothing that is not JSON.
    #[derive(Clone)]
    struct Picky {
        written: Vec<Vec<u8>>,
    }

    impl Sink for Picky {
        fn name(&self) -> &'static str {
            "picky"
        }
        async fn prepare(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        async fn write(&mut self, batch: &[Doc]) -> Result<Vec<Outcome>, SinkError> {
            // A batch with a `slow` document finishes after the batches behind it.
            if batch
                .iter()
                .any(|doc| doc.json.windows(4).any(|w| w == b"slow"))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(batch
                .iter()
                .map(|doc| {
                    let refused = doc.json.windows(6).any(|w| w == b"refuse");
                    if crate::sinks::bad_rows::recognise(&doc.json).is_some() {
                        if refused {
                            Outcome::Rejected("bad row refused".into())
                        } else {
                            Outcome::BadRowWritten
                        }
                    } else if !doc.json.starts_with(b"{") {
                        Outcome::Unreadable(vec!["not JSON".into()])
                    } else if doc.json.windows(3).any(|w| w == b"bad") {
                        Outcome::Rejected("no".into())
                    } else {
                        self.written.push(doc.json.clone());
                        Outcome::Written
                    }
                })
                .collect())
        }
    }

    /// Loads `input` with [`Picky`] in batches of `max_events`: the summary, the bad rows
    /// written, the metrics and how many times progress was reported.
    async fn load_file(input: &[u8], max_events: usize) -> (Summary, String, LoaderMetrics, u32) {
        let mut bad = Vec::new();
        let metrics = LoaderMetrics::new("picky");
        let limits = BatchLimits {
            max_events,
            max_bytes: 1 << 20,
            max_wait: Duration::from_secs(1),
        };
        let mut calls = 0;
        let summary = run_file(
            Picky { written: vec![] },
            input,
            &mut bad,
            limits,
            &metrics,
            |_, _| calls += 1,
        )
        .await
        .unwrap();
        (summary, String::from_utf8(bad).unwrap(), metrics, calls)
    }

    #[tokio::test]
    async fn file_mode_writes_batches_and_bad_rows() {
        let input = b"{\"a\":1}\nnope\n{\"bad\":2}\n{\"a\":3}\n{\"a\":4}";
        let (summary, bad, metrics, calls) = load_file(input, 2).await;
        assert_eq!(
            summary,
            Summary {
                read: 5,
                written: 3,
                unreadable: 1,
                rejected: 1,
                batches: 3,
                bad_rows_loaded: 0,
                unloadable: 0,
            }
        );
        assert_eq!(calls, 3);
        assert_eq!(bad.lines().count(), 2);
        assert!(bad.contains("loader_parsing_error"), "{bad}");
        assert!(bad.contains("loader_runtime_error"), "{bad}");
        let text = metrics.render();
        assert!(
            text.contains("plowline_loader_events_written_total{sink=\"picky\"} 3\n"),
            "{text}"
        );
        assert!(text.contains(
            "plowline_loader_bad_rows_total{sink=\"picky\",type=\"loader_runtime_error\"} 1\n"
        ));
    }

    #[tokio::test]
    async fn file_mode_keeps_the_file_order_when_a_later_batch_finishes_first() {
        let input = b"{\"slow\":\"bad 1\"}\n{\"bad\":2}\n{\"a\":3}\n{\"bad\":4}\n";
        let (summary, bad, metrics, _) = load_file(input, 1).await;
        assert_eq!((summary.read, summary.written, summary.rejected), (4, 1, 3));
        // The slow batch took 100 ms to write.
        let text = metrics.render();
        let seconds = text
            .lines()
            .find_map(|l| l.strip_prefix("plowline_loader_write_seconds_total{sink=\"picky\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no write time in {text}"));
        assert!((0.1..60.0).contains(&seconds), "{seconds}");
        let at = |needle: &str| {
            bad.find(needle)
                .unwrap_or_else(|| panic!("{needle}: {bad}"))
        };
        assert!(at("bad 1") < at(r#"\"bad\":2"#), "{bad}");
        assert!(at(r#"\"bad\":2"#) < at(r#"\"bad\":4"#), "{bad}");
    }

    fn line(row: &BadRow) -> Vec<u8> {
        let mut out = Vec::new();
        row.write_line(&mut out);
        out
    }

    #[tokio::test]
    async fn bad_rows_are_loaded_and_a_refused_one_is_wrapped_at_most_once() {
        let accepted = BadRow::format_violation(b"a line", "nginx", "no quote", 0);
        let refused = BadRow::format_violation(b"refuse me", "nginx", "no quote", 0);
        let loader_made = BadRow::loader_parsing_error(b"refuse", &["no".into()], 0);
        let mut input = line(&accepted);
        input.extend(line(&refused));
        input.extend(line(&loader_made));
        let limits = BatchLimits {
            max_events: 10,
            max_bytes: 1 << 20,
            max_wait: Duration::from_secs(1),
        };
        let metrics = LoaderMetrics::new("picky");
        let mut bad = Vec::new();
        let sink = Picky { written: vec![] };
        let summary = run_file(
            sink,
            input.as_slice(),
            &mut bad,
            limits,
            &metrics,
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(
            (
                summary.written,
                summary.bad_rows_loaded,
                summary.rejected,
                summary.unloadable
            ),
            (1, 1, 1, 1),
            "{summary}"
        );
        // The processor's refused row is wrapped once; the loader's is only logged.
        let wrapped: Vec<&[u8]> = bad
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(wrapped.len(), 1);
        let row = crate::sinks::bad_rows::recognise(wrapped[0]).unwrap();
        assert_eq!(row.kind, "loader_runtime_error");
        assert!(row.payload.contains("refuse me"), "{}", row.payload);
        // Read again (a loader on its own bad topic) and refused again: it stops there.
        let metrics = LoaderMetrics::new("picky");
        let mut again = Vec::new();
        let sink = Picky { written: vec![] };
        let summary = run_file(sink, wrapped[0], &mut again, limits, &metrics, |_, _| {})
            .await
            .unwrap();
        assert_eq!((summary.unloadable, summary.rejected), (1, 0));
        assert!(again.is_empty());
        assert!(metrics
            .render()
            .contains("plowline_loader_bad_rows_unloadable_total{sink=\"picky\"} 1\n"));
    }
}
