//! The ClickHouse sink: batches of enriched events as RowBinary inserts (the `clickhouse`
//! crate, over HTTP) into a `ReplacingMergeTree` keyed by `event_id`, so a batch written twice
//! gives the same results under `FINAL`.
//!
//! - `config` — `[clickhouse]`;
//! - `schema` — the table and the dashboards' views (`plow-processor schema clickhouse`);
//! - `encoder` — a JSON document to a row;
//! - `service` — the HTTP client and what its failures mean;
//! - `retry` — backoff.
//!
//! # Invariants
//!
//! - A batch is retried (backoff, forever) while the failure is transient: network errors,
//!   timeouts, a server that is down or answers with an exception that is not about the data.
//! - When the server refuses an insert for its data, the rows are split in halves and inserted
//!   again until the refused rows are alone: each becomes [`Outcome::Rejected`] with the
//!   server's message, every other row is written. Re-inserting rows that were already written
//!   by a failed attempt is harmless (same `event_id`, same sorting key).
//! - A document that is not an enriched event is [`Outcome::Unreadable`]; one whose values do
//!   not fit the schema (a timestamp outside `DateTime`) is [`Outcome::Rejected`]. Neither is sent.
//! - A document that is a Snowplow bad row (it never reads as an enriched event: it has a
//!   top-level `schema`) goes to the bad-rows table ([`schema::bad_rows_ddl`]) with the same
//!   retries and isolation, and is [`Outcome::BadRowWritten`]; a re-delivered bad row has the
//!   same `row_id` and collapses under `FINAL`.

pub mod config;
pub mod encoder;
pub mod retry;
pub mod schema;
pub mod service;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::ClickHouseConfig;

use super::{bad_rows, Doc, Outcome, Sink, SinkError};
use encoder::{decode, BadRowRow, DecodeError, EventRow};
use retry::{Backoff, RetryLog};
use service::{Failure, Service};

/// Writes batches of enriched events into ClickHouse.
#[derive(Debug, Clone)]
pub struct ClickHouseSink {
    config: ClickHouseConfig,
    service: Service,
    retries: Arc<AtomicU64>,
}

impl ClickHouseSink {
    /// A sink for `config` (validated: see [`ClickHouseConfig::validate`]). `retries` counts
    /// failed requests that were retried.
    pub fn new(config: &ClickHouseConfig, retries: Arc<AtomicU64>) -> ClickHouseSink {
        ClickHouseSink {
            config: config.clone(),
            service: Service::new(config),
            retries,
        }
    }

    fn fatal(message: String) -> SinkError {
        SinkError::Fatal {
            sink: "clickhouse",
            message,
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.config.retry_initial_backoff_ms),
            Duration::from_millis(self.config.retry_max_backoff_ms),
        )
    }

    /// Runs `attempt` until it succeeds or fails for a reason that is not transient.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut backoff = self.backoff();
        let mut log = RetryLog::new();
        loop {
            match attempt().await {
                Ok(value) => {
                    log.recovered(what);
                    return Ok(value);
                }
                Err(Failure::Transient(error)) => {
                    let wait = backoff.next_wait();
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    log.failed(what, &error, wait);
                    tokio::time::sleep(wait).await;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Inserts the rows `0..n` with `insert` (which inserts a range of them in one request);
    /// isolates the rows the server refuses by halving. Returns the refused rows' positions
    /// with the server's reason.
    async fn insert_isolating<F, Fut>(
        &self,
        table: &str,
        n: usize,
        insert: F,
    ) -> Result<Vec<(usize, String)>, SinkError>
    where
        F: Fn(Range<usize>) -> Fut,
        Fut: std::future::Future<Output = Result<(), Failure>>,
    {
        let mut refused = Vec::new();
        let mut pending = Vec::with_capacity(16);
        pending.push(0..n);
        let what = format!("insert into {table}");
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            match self.retrying(&what, || insert(range.clone())).await {
                Ok(()) => {}
                Err(Failure::Rejected(reason)) if range.len() == 1 => {
                    refused.push((range.start, reason));
                }
                Err(Failure::Rejected(reason)) => {
                    tracing::debug!(rows = range.len(), %reason, "insert refused; halving");
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                Err(Failure::Fatal(message) | Failure::Transient(message)) => {
                    return Err(Self::fatal(message));
                }
            }
        }
        Ok(refused)
    }
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn prepare(&mut self) -> Result<(), SinkError> {
        if self.config.create_schema {
            for statement in schema::statements(&self.config) {
                let service = &self.service;
                self.retrying("create schema", || service.execute(&statement))
                    .await
                    .map_err(|f| Self::fatal(format!("cannot create the schema: {f:?}")))?;
            }
            tracing::info!(
                table = %self.service.table(),
                bad_rows_table = %self.service.bad_rows_table(),
                "schema ready"
            );
            return Ok(());
        }
        let service = &self.service;
        for table in [service.table(), service.bad_rows_table()] {
            let exists = self
                .retrying("check the table", || service.table_exists(table))
                .await
                .map_err(|f| Self::fatal(format!("cannot check the table {table}: {f:?}")))?;
            if !exists {
                return Err(Self::fatal(format!(
                    "table {table} does not exist; create it (plow-processor schema clickhouse) \
                     or set clickhouse.create_schema = true"
                )));
            }
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Doc]) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes = vec![Outcome::Written; batch.len()];
        // The index in `batch` of each readable document.
        let mut rows = Vec::with_capacity(batch.len());
        // The bad rows of the batch: their index in `batch`, their row.
        let mut bad: Vec<(usize, BadRowRow)> = Vec::new();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        // The first attempt streams each row as soon as it is decoded, in inserts of at most
        // `max_insert_rows` rows: the server parses while the rest is decoded, and finishes an
        // insert (writes its part, runs the views) while the next one is decoded. The rows are
        // decoded again for the retries.
        let mut first: Result<(), Failure> = Ok(());
        let mut previous: Option<clickhouse::insert::Insert<EventRow<'_>>> = None;
        let mut next = 0;
        while next < batch.len() {
            let ending = previous.take();
            let end_previous = async move {
                match ending {
                    Some(insert) => insert.end().await.map_err(|e| service::classify(&e)),
                    None => Ok(()),
                }
            };
            let stream_next = async {
                let mut insert = self.service.start_insert();
                let mut streamed = 0;
                while next < batch.len() && streamed < self.config.max_insert_rows {
                    let i = next;
                    next += 1;
                    match decode(&batch[i].json) {
                        Ok(row) => {
                            rows.push(i);
                            streamed += 1;
                            if let Ok(stream) = &mut insert {
                                if let Err(error) = stream.write(&row).await {
                                    insert = Err(service::classify(&error));
                                }
                            }
                        }
                        Err(DecodeError::Unreadable(reasons)) => {
                            match bad_rows::recognise(&batch[i].json) {
                                Some(doc) => bad.push((i, BadRowRow::new(doc, now_ms))),
                                None => outcomes[i] = Outcome::Unreadable(reasons),
                            }
                        }
                        Err(DecodeError::Unstorable(reason)) => {
                            outcomes[i] = Outcome::Rejected(reason);
                        }
                    }
                }
                insert
            };
            let (ended, started) = tokio::join!(end_previous, stream_next);
            first = worst(first, ended);
            match started {
                Ok(insert) => previous = Some(insert),
                Err(failure) => first = worst(first, Err(failure)),
            }
        }
        if let Some(insert) = previous {
            first = worst(first, insert.end().await.map_err(|e| service::classify(&e)));
        }
        let retry = match first {
            Ok(()) => false,
            Err(Failure::Fatal(message)) => return Err(Self::fatal(message)),
            Err(Failure::Transient(error)) => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "insert failed; retrying");
                true
            }
            Err(Failure::Rejected(_)) => true,
        };
        if retry {
            let service = &self.service;
            let rows = &rows;
            let refused = self
                .insert_isolating(service.table(), rows.len(), move |range| {
                    service.insert(rows[range].iter().map(|&i| batch[i].json.as_slice()))
                })
                .await?;
            for (position, reason) in refused {
                outcomes[rows[position]] = Outcome::Rejected(reason);
            }
        }
        if !bad.is_empty() {
            let service = &self.service;
            let (indices, bad_rows): (Vec<usize>, Vec<BadRowRow>) = bad.into_iter().unzip();
            let bad_rows = &bad_rows;
            for &i in &indices {
                outcomes[i] = Outcome::BadRowWritten;
            }
            let refused = self
                .insert_isolating(service.bad_rows_table(), bad_rows.len(), move |range| {
                    service.insert_bad_rows(&bad_rows[range])
                })
                .await?;
            for (position, reason) in refused {
                outcomes[indices[position]] = Outcome::Rejected(reason);
            }
        }
        Ok(outcomes)
    }
}

/// The failure that decides what to do next: fatal before any other, else the first.
fn worst(a: Result<(), Failure>, b: Result<(), Failure>) -> Result<(), Failure> {
    match (a, b) {
        (Err(Failure::Fatal(m)), _) | (_, Err(Failure::Fatal(m))) => Err(Failure::Fatal(m)),
        (Err(f), _) | (Ok(()), Err(f)) => Err(f),
        (Ok(()), Ok(())) => Ok(()),
    }
}
