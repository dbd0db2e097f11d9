//! Loaders: bulk writers of enriched events into ClickHouse and Elasticsearch.
//!
//! A loader reads enriched events (the JSON documents that `plow-processor run` produces to
//! `tracker-enriched`, one per Kafka message or per line of a file), groups them into batches by
//! count, bytes and time, and hands each batch to a [`Sink`]. The sink answers one [`Outcome`]
//! per event; the loader stores an input offset only after every event up to it was written or
//! turned into a bad row that the broker acknowledged.
//!
//! # The contract between the loader and a sink
//!
//! - [`Sink::write`] returns only when every document of the batch has a final outcome. Transient
//!   failures (network errors, timeouts, HTTP 429 and 5xx, a server that is down) are retried by
//!   the sink with backoff, for as long as it takes: the partition waits, nothing is dropped.
//! - A document the sink refuses for its content (an Elasticsearch 400 mapping error, a row
//!   ClickHouse cannot store) is [`Outcome::Rejected`] with the sink's reason; the loader sends
//!   it to the bad topic as a `loader_runtime_error` bad row. A document that is not a readable
//!   enriched event is [`Outcome::Unreadable`] and becomes a `loader_parsing_error` bad row.
//! - Writes are idempotent by `event_id` (Elasticsearch `_id`, ClickHouse `ReplacingMergeTree`),
//!   so a batch written again after a crash gives the same results.
//! - A document that is a Snowplow bad row ([`bad_rows::recognise`]) is stored in the sink's
//!   bad-row table or indices, idempotently by the hash of the document, and answered
//!   [`Outcome::BadRowWritten`]; so the same loader loads `tracker-bad` too. A bad row the sink
//!   refuses is [`Outcome::Rejected`] like any document (the runner decides whether to wrap it).

pub mod bad_rows;
pub mod clickhouse;
pub mod config;
pub mod elasticsearch;
pub mod runner;

use std::future::Future;

/// One enriched event on its way to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The enriched event as one JSON object (the `plow-processor run` output), without a line
    /// break.
    pub json: Vec<u8>,
    /// Where it was read, for logs and bad rows.
    pub origin: Origin,
}

/// Where a [`Doc`] was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Kafka message.
    Kafka {
        /// The partition.
        partition: i32,
        /// The message's offset.
        offset: i64,
    },
    /// A line of an NDJSON file (1-based).
    Line(u64),
}

/// What became of one document of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by the sink (or already there: a repeated `event_id`).
    Written,
    /// A bad row, stored in the sink's bad-row table or indices (or already there).
    BadRowWritten,
    /// Refused by the sink for its content; the reason is the sink's own message.
    Rejected(String),
    /// Not a readable enriched event (not JSON, no valid `event_id`, a field of the wrong type);
    /// every reason.
    Unreadable(Vec<String>),
}

/// A bulk writer into one store.
pub trait Sink {
    /// The store's name in logs, metrics and bad rows: `clickhouse`, `elasticsearch`.
    fn name(&self) -> &'static str;

    /// Prepares the store (creates the schema or installs the index template when configured).
    fn prepare(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Writes a batch; one outcome per document, in order. Retries transient failures itself
    /// until they succeed; returns an error only when it must stop (bad credentials, a missing
    /// table it was not allowed to create, shutdown requested while retrying).
    fn write(
        &mut self,
        batch: &[Doc],
    ) -> impl Future<Output = Result<Vec<Outcome>, SinkError>> + Send;
}

/// Why a sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The store refused the request in a way retrying cannot fix.
    #[error("{sink}: {message}")]
    Fatal {
        /// The sink's name.
        sink: &'static str,
        /// What the store said, and what to do about it.
        message: String,
    },
    /// Shutdown was requested while a batch was being retried; its offsets were not stored.
    #[error("{sink}: shut down while retrying a batch")]
    Interrupted {
        /// The sink's name.
        sink: &'static str,
    },
}
