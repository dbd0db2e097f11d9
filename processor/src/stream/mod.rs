//! `plow-processor run`: the streaming mode, Kafka in, Kafka out, at least once.
//!
//! One consumer (in a consumer group) reads access-log lines from `kafka.input_topic`; each
//! message's value goes through the pure [`process_line_with`]; its good events are produced to
//! `kafka.good_topic` (key: [`EnrichedEvent::partition_key`], else none) and its bad rows to
//! `kafka.bad_topic` (producer: `acks=all`, idempotence, lz4).
//!
//! # Invariants
//!
//! - **An input offset is stored only after every output of its message, and of every message
//!   before it in the partition, has been acknowledged by the broker.** The consumer runs with
//!   `enable.auto.offset.store=false`; librdkafka's auto-commit commits only what was stored.
//!   [`OffsetTracker`] keeps the in-flight messages of each partition and stores the next offset
//!   after the longest fully acknowledged prefix.
//! - **A failed production is retried, never skipped**: librdkafka retries internally until
//!   `message.timeout.ms`; a final delivery error is counted, logged (at most one WARN a
//!   second), and the same record is produced again with exponential backoff, for as long as it
//!   takes (the offset waits). A producer that fails the same record
//!   `FAILURES_BEFORE_NEW_PRODUCER` (3) times in a row, or hits a fatal error, is replaced by a new
//!   one: an idempotent producer whose producer id the broker lost never recovers by itself (seen
//!   with Tansu 0.6 across a restart).
//! - **Revoked partitions store nothing more**: on revocation their in-flight messages are
//!   forgotten (their outputs may still arrive: duplicates with the same `event_id`, since the
//!   id is the tracker's `eid` or derived from the line).
//! - **Bounded in-flight**: at most `kafka.max_in_flight_messages` messages are being produced;
//!   the consumer waits for a slot before reading the next one.
//! - **Clean shutdown** (SIGTERM/SIGINT): stop consuming, wait up to `kafka.shutdown_timeout_ms`
//!   for the in-flight productions, commit the stored offsets synchronously, exit 0.

pub mod metrics;
pub mod offsets;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use crate::config::ValidatedConfig;
use crate::pipeline::{process_line_with, Context};
use crate::EnrichedEvent;
pub use metrics::Metrics;
pub use offsets::{OffsetTracker, Ticket};

/// The first wait before producing a record again after a final delivery error.
const RETRY_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two productions of the same record.
const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The wait before enqueuing again when the producer's local queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
/// After this many final delivery errors in a row for one record, the producer is replaced by a
/// new one (a fresh producer id): an idempotent producer whose sequence the broker lost, or one
/// in a fatal state, never recovers by itself.
const FAILURES_BEFORE_NEW_PRODUCER: u32 = 3;

/// Why `plow-processor run` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A Kafka client could not be created or subscribed.
    #[error("kafka {what} (brokers {brokers})")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The bootstrap brokers.
        brokers: String,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// The metrics endpoint could not listen.
    #[error("cannot listen on metrics.listen {addr}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl StreamError {
    /// The error of a Kafka client call (for `map_err`): what was being done, against which
    /// bootstrap brokers.
    pub(crate) fn kafka(what: &'static str, brokers: &str) -> impl FnOnce(KafkaError) -> Self {
        let brokers = brokers.to_owned();
        move |source| StreamError::Kafka {
            what,
            brokers,
            source,
        }
    }
}

/// What a run did, returned at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Input messages consumed.
    pub lines: u64,
    /// Good events produced.
    pub events: u64,
    /// Bad rows produced.
    pub bad_rows: u64,
    /// Messages still unacknowledged when the shutdown timeout ran out (read again next time).
    pub abandoned: u64,
}

/// The consumer's context: forgets revoked partitions' in-flight work.
struct StreamContext {
    tracker: Arc<Mutex<OffsetTracker>>,
}

impl ClientContext for StreamContext {}

impl ConsumerContext for StreamContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let mut tracker = lock(&self.tracker);
                let unfinished = tracker.in_flight();
                for element in partitions.elements() {
                    tracker.revoke(element.topic(), element.partition());
                }
                tracing::info!(
                    partitions = partitions.count(),
                    abandoned = unfinished - tracker.in_flight(),
                    "partitions revoked; their unacknowledged messages will be read again"
                );
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> MutexGuard<'_, OffsetTracker> {
    // The tracker stays consistent even if a holder panicked: every method completes its update.
    tracker
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

type GroupConsumer = StreamConsumer<StreamContext>;

/// One output record of a message, kept until it is acknowledged so that it can be produced again.
#[derive(Debug)]
struct Record {
    topic: Arc<str>,
    key: Option<String>,
    payload: Vec<u8>,
}

impl Record {
    fn future_record(&self) -> FutureRecord<'_, str, [u8]> {
        let record = FutureRecord::to(&self.topic).payload(&self.payload[..]);
        match &self.key {
            Some(key) => record.key(key.as_str()),
            None => record,
        }
    }
}

/// The producer, replaced by a new one when it stops delivering (see
/// [`FAILURES_BEFORE_NEW_PRODUCER`]).
struct Producers {
    config: ClientConfig,
    current: Mutex<(u64, FutureProducer)>,
}

impl Producers {
    fn new(config: ClientConfig) -> Result<Producers, KafkaError> {
        let producer = config.create()?;
        Ok(Producers {
            config,
            current: Mutex::new((0, producer)),
        })
    }

    /// The current producer and its generation.
    fn get(&self) -> (u64, FutureProducer) {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.0, current.1.clone())
    }

    /// Replaces the producer of `generation` (once: later callers with the same generation find
    /// it already replaced). Its unacknowledged records fail with a purge error and are produced
    /// again by their tasks.
    fn replace(&self, generation: u64, metrics: &Metrics) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != generation {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(producer) => {
                let old = std::mem::replace(&mut current.1, producer);
                current.0 += 1;
                metrics.producers_replaced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    generation = current.0,
                    "the producer keeps failing; replaced it with a new one"
                );
                // Dropping a producer purges and flushes it, which blocks.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(error) => tracing::warn!(%error, "cannot create a new producer"),
        }
    }
}

/// A production failed and will be retried: counted every time, logged at WARN at most once per
/// second (with how many failed since), at DEBUG otherwise, so that a broker outage does not
/// flood the log with one line per record.
#[derive(Debug, Default)]
struct ProduceFailed {
    last_warn_ms: std::sync::atomic::AtomicI64,
    since_warn: std::sync::atomic::AtomicU64,
}

impl ProduceFailed {
    fn emit(&self, metrics: &Metrics, topic: &str, what: &str, error: &str) {
        metrics.produce_errors.fetch_add(1, Ordering::Relaxed);
        let failed = self.since_warn.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let warn = now - last >= 1000
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if warn {
            self.since_warn.store(0, Ordering::Relaxed);
            tracing::warn!(%error, topic, failed, "{what}; retrying");
        } else {
            tracing::debug!(%error, topic, "{what}; retrying");
        }
    }
}

/// What the delivery tasks share.
struct Shared {
    produce_failed: ProduceFailed,
    producers: Producers,
    consumer: Arc<GroupConsumer>,
    tracker: Arc<Mutex<OffsetTracker>>,
    metrics: Arc<Metrics>,
}

/// The consumer and producer settings: plowline's, then the pass-through `librdkafka` map.
fn client_configs(config: &ValidatedConfig) -> (ClientConfig, ClientConfig) {
    let kafka = &config.kafka;
    let mut consumer = ClientConfig::new();
    consumer
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &kafka.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        // Not lower: with a few milliseconds librdkafka's broker thread wakes so often that at
        // 2,000 events/s it cost twice the CPU of the enrichment itself.
        .set("linger.ms", "20");
    for (key, value) in &kafka.librdkafka {
        consumer.set(key, value);
        producer.set(key, value);
    }
    (consumer, producer)
}

/// Runs until `shutdown` completes, then drains the in-flight productions and commits. The
/// metrics endpoint's address is logged once it listens.
pub async fn run(
    config: &ValidatedConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, StreamError> {
    let kafka = &config.kafka;
    let kafka_error = |what| StreamError::kafka(what, &kafka.brokers);
    let metrics = Arc::new(Metrics::new());
    let server = metrics::start(config.metrics_listen, Arc::clone(&metrics)).await?;

    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let (consumer_config, producer_config) = client_configs(config);
    let consumer: Arc<GroupConsumer> = Arc::new(
        consumer_config
            .create_with_context(StreamContext {
                tracker: Arc::clone(&tracker),
            })
            .map_err(kafka_error("consumer"))?,
    );
    let producers = Producers::new(producer_config).map_err(kafka_error("producer"))?;
    consumer
        .subscribe(&[&kafka.input_topic])
        .map_err(kafka_error("subscribe"))?;
    tracing::info!(
        brokers = %kafka.brokers,
        group = %kafka.group,
        input = %kafka.input_topic,
        good = %kafka.good_topic,
        bad = %kafka.bad_topic,
        "consuming"
    );

    let shared = Arc::new(Shared {
        produce_failed: ProduceFailed::default(),
        producers,
        consumer: Arc::clone(&consumer),
        tracker: Arc::clone(&tracker),
        metrics: Arc::clone(&metrics),
    });
    let max_in_flight = kafka.max_in_flight_messages;
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let good_topic: Arc<str> = Arc::from(kafka.good_topic.as_str());
    let bad_topic: Arc<str> = Arc::from(kafka.bad_topic.as_str());
    let mut bad_rows = Vec::new();
    let mut buf = Vec::with_capacity(4096);

    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let message = tokio::select! {
            biased;
            () = &mut shutdown => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "consumer error; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ticket = lock(&tracker).begin(message.topic(), message.partition(), message.offset());
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics.lines.fetch_add(1, Ordering::Relaxed);

        let line = trim_line_break(message.payload().unwrap_or_default());
        let ctx = Context {
            format: &config.log_format,
            max_line_bytes: config.max_line_bytes,
            etl_tstamp_ms: now_ms(),
            enrich: &config.enrichments,
        };
        bad_rows.clear();
        // Good events are encoded as they come: they borrow from the message.
        let mut records = Vec::new();
        let mut events = 0;
        process_line_with(line, &ctx, &mut bad_rows, |event| {
            buf.clear();
            config.output_format.write_line(event, &mut buf);
            records.push(record(&good_topic, key(event), &buf));
            events += 1;
        });
        drop(message);

        for row in &bad_rows {
            buf.clear();
            row.write_line(&mut buf);
            records.push(record(&bad_topic, None, &buf));
            metrics.bad_row(row.kind);
        }
        metrics.events.fetch_add(events, Ordering::Relaxed);

        // Enqueue in consumption order (so outputs keep the input's order), then wait for the
        // acknowledgements in a task of its own.
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let delivery = enqueue(&shared, &record).await;
            deliveries.push((record, delivery));
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            for (record, delivery) in deliveries {
                acknowledge(&shared, &record, delivery).await;
            }
            shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            finish(&shared, &ticket);
            drop(slot);
        });
    }

    // Shutdown: consume no more, wait for what is in flight, commit.
    metrics.healthy.store(false, Ordering::Relaxed);
    tracing::info!(
        in_flight = metrics.in_flight.load(Ordering::Relaxed),
        "shutting down: waiting for in-flight productions"
    );
    let permits = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(config.shutdown_timeout, slots.acquire_many(permits)).await;
    let abandoned = match drained {
        Ok(_) => 0,
        Err(_) => {
            let abandoned = lock(&tracker).in_flight() as u64;
            tracing::warn!(
                abandoned,
                timeout_ms = config.shutdown_timeout.as_millis() as u64,
                "shutdown timeout: unacknowledged messages will be read again after a restart"
            );
            abandoned
        }
    };
    // No more offsets may be stored from here on.
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
    let summary = RunSummary {
        lines: metrics.lines.load(Ordering::Relaxed),
        events: metrics.events.load(Ordering::Relaxed),
        bad_rows: metrics
            .bad_rows
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum(),
        abandoned,
    };
    tracing::info!(
        lines = summary.lines,
        events = summary.events,
        bad_rows = summary.bad_rows,
        "stopped"
    );
    Ok(summary)
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "shutdown requested");
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutdown requested");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}

fn trim_line_break(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn key(event: &EnrichedEvent) -> Option<String> {
    event.partition_key().map(str::to_owned)
}

/// A record of `encoded` without the line break the encoders end lines with.
fn record(topic: &Arc<str>, key: Option<String>, encoded: &[u8]) -> Record {
    Record {
        topic: Arc::clone(topic),
        key,
        payload: trim_line_break(encoded).to_vec(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Hands `record` to the current producer, waiting while its queue is full and retrying other
/// errors. Returns the producer's generation and the delivery report to come.
async fn enqueue(shared: &Shared, record: &Record) -> (u64, DeliveryFuture) {
    let mut backoff = RETRY_FIRST_BACKOFF;
    loop {
        let (generation, producer) = shared.producers.get();
        match producer.send_result(record.future_record()) {
            Ok(delivery) => return (generation, delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((error, _)) => {
                shared.produce_failed.emit(
                    &shared.metrics,
                    &record.topic,
                    "cannot enqueue a record",
                    &error.to_string(),
                );
                if producer.client().fatal_error().is_some() {
                    shared.producers.replace(generation, &shared.metrics);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
            }
        }
    }
}

/// Waits for the broker's acknowledgement of `record`, producing it again after each final
/// delivery error until one is acknowledged; replaces a producer that keeps failing.
async fn acknowledge(shared: &Shared, record: &Record, enqueued: (u64, DeliveryFuture)) {
    let (mut generation, mut delivery) = enqueued;
    let mut backoff = RETRY_FIRST_BACKOFF;
    let mut failures = 0_u32;
    loop {
        let error = match delivery.await {
            Ok(Ok(_)) => return,
            Ok(Err((error, _))) => error.to_string(),
            Err(_canceled) => "the producer dropped the delivery report".to_owned(),
        };
        failures += 1;
        shared
            .produce_failed
            .emit(&shared.metrics, &record.topic, "delivery failed", &error);
        let (_, producer) = shared.producers.get();
        if failures >= FAILURES_BEFORE_NEW_PRODUCER || producer.client().fatal_error().is_some() {
            shared.producers.replace(generation, &shared.metrics);
            failures = 0;
        }
        drop(producer);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX_BACKOFF);
        (generation, delivery) = enqueue(shared, record).await;
    }
}

/// Marks the ticket's message done and stores the offset it unlocks, if any.
fn finish(shared: &Shared, ticket: &Ticket) {
    // The lock is held while storing, so that stores of a partition never go backwards and
    // none happens after a revocation.
    let mut tracker = lock(&shared.tracker);
    let Some(next) = tracker.finish(ticket) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    if let Err(error) =
        list.add_partition_offset(&ticket.topic, ticket.partition, Offset::Offset(next))
    {
        tracing::warn!(%error, "cannot build the offset list");
        return;
    }
    match shared.consumer.store_offsets(&list) {
        Ok(()) => {
            shared
                .metrics
                .offsets_stored
                .fetch_add(1, Ordering::Relaxed);
        }
        // Revoked meanwhile: not ours to store any more.
        Err(error) => tracing::debug!(
            %error,
            topic = %ticket.topic,
            partition = ticket.partition,
            "offset not stored"
        ),
    }
    drop(tracker);
}
