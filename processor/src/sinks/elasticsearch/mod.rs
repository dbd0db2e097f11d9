//! The Elasticsearch sink: enriched events written with the `_bulk` API, `_id` = event_id.
//!
//! - [`config`]: `[elasticsearch]`, validated once;
//! - [`encoder`]: the `_bulk` body (daily index `<index_prefix>-YYYY.MM.DD` of the event's
//!   `derived_tstamp`, else `collector_tstamp`, or a data stream);
//! - [`service`]: the HTTP client (endpoints in turn, credentials, TLS, gzip, timeouts);
//! - [`retry`]: what each answer means, per request and per item, and the backoff;
//! - [`template`]: the index templates (`index_template.json`, `bad_rows_template.json`) and
//!   ILM policy;
//! - [`metrics`]: the counters the loader renders.
//!
//! A batch is written until every document has a final outcome: items refused with 429/5xx are
//! sent again alone, whole requests that fail transiently are sent again (to the next endpoint),
//! with exponential backoff and jitter, honouring `Retry-After`; documents refused for their
//! content come back as [`Outcome::Rejected`] with Elasticsearch's reason. With the default
//! `create` operation a document indexed by an earlier attempt answers 409 on the next, and
//! counts as written: each event is indexed once.
//!
//! Bad rows (a document with a bad-row `schema`, e.g. read from `tracker-bad`) are indexed the
//! same way into `<bad_index_prefix>-YYYY.MM.DD` with `_id` the SHA-256 of the document, and
//! answered [`Outcome::BadRowWritten`].

pub mod config;
pub mod encoder;
pub mod metrics;
pub mod retry;
pub mod service;
pub mod template;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;

pub use self::config::{ElasticsearchConfig, IlmConfig, OpType};
use self::config::{Target, Validated};
use self::encoder::Encoder;
pub use self::metrics::ElasticsearchMetrics;
use self::metrics::LogLimiter;
use self::retry::{Backoff, ItemResult, RequestResult};
use self::service::Service;
use super::{Doc, Outcome, Sink, SinkError};

const NAME: &str = "elasticsearch";

fn fatal(message: String) -> SinkError {
    SinkError::Fatal {
        sink: NAME,
        message,
    }
}

/// Writes batches of enriched events with the `_bulk` API.
#[derive(Debug, Clone)]
pub struct ElasticsearchSink {
    config: Validated,
    encoder: Encoder,
    service: Service,
    metrics: Arc<ElasticsearchMetrics>,
    rejection_log: LogLimiter,
    retry_log: LogLimiter,
}

/// The answer to one `_bulk` request.
enum Attempt {
    /// One result per item.
    Items(Vec<ItemResult>),
    /// Nothing is known: send it all again.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl ElasticsearchSink {
    /// A sink for `config`; a configuration error is fatal.
    pub fn new(config: &ElasticsearchConfig) -> Result<ElasticsearchSink, SinkError> {
        let config = config.validate().map_err(|e| fatal(e.to_string()))?;
        let service = Service::new(&config).map_err(|e| fatal(format!("[elasticsearch] {e}")))?;
        Ok(ElasticsearchSink {
            encoder: Encoder::new(config.target.clone(), config.op_type)
                .with_bad_prefix(&config.bad_prefix),
            service,
            config,
            metrics: Arc::default(),
            rejection_log: LogLimiter::new(10, Duration::from_secs(10)),
            retry_log: LogLimiter::new(10, Duration::from_secs(10)),
        })
    }

    /// The sink's counters, shared with whoever renders them.
    pub fn metrics(&self) -> Arc<ElasticsearchMetrics> {
        Arc::clone(&self.metrics)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.config.initial_backoff, self.config.max_backoff)
    }

    fn warn_retry(&mut self, what: &str, reason: &str, wait: Duration) {
        if let Some(suppressed) = self.retry_log.allow() {
            tracing::warn!(
                suppressed,
                wait_ms = wait.as_millis() as u64,
                "elasticsearch: {what}: {reason}; retrying"
            );
        }
    }

    /// A request retried until it gets a final answer: its body on success.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, SinkError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON"));
        let mut backoff = self.backoff();
        loop {
            let (reason, retry_after) = match self
                .service
                .send(method.clone(), path, "application/json", body.clone())
                .await
            {
                Err(e) => (e.to_string(), None),
                Ok(reply) => match retry::classify_request(
                    reply.status,
                    reply.retry_after.as_deref(),
                    &reply.body,
                    &reply.endpoint,
                ) {
                    RequestResult::Success => return Ok(reply.body),
                    RequestResult::Fatal(message) => {
                        return Err(fatal(format!("{method} {path}: {message}")))
                    }
                    RequestResult::Retry {
                        reason,
                        retry_after,
                    } => (reason, retry_after),
                },
            };
            let wait = backoff.next(retry_after);
            self.warn_retry(&format!("{method} {path}"), &reason, wait);
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one `_bulk` body of `items` documents once.
    async fn bulk_once(&mut self, body: Vec<u8>, items: usize) -> Result<Attempt, SinkError> {
        ElasticsearchMetrics::add(&self.metrics.bulk_requests, 1);
        let reply = match self
            .service
            .send(Method::POST, "/_bulk", "application/x-ndjson", Some(body))
            .await
        {
            Ok(reply) => reply,
            Err(e) => {
                return Ok(Attempt::Retry {
                    reason: e.to_string(),
                    retry_after: None,
                })
            }
        };
        ElasticsearchMetrics::add(&self.metrics.request_bytes, reply.sent_bytes as u64);
        match retry::classify_request(
            reply.status,
            reply.retry_after.as_deref(),
            &reply.body,
            &reply.endpoint,
        ) {
            RequestResult::Fatal(message) => Err(fatal(format!("POST /_bulk: {message}"))),
            RequestResult::Retry {
                reason,
                retry_after,
            } => Ok(Attempt::Retry {
                reason,
                retry_after,
            }),
            RequestResult::Success => Ok(
                match retry::classify_items(&reply.body, self.config.op_type, items) {
                    Ok(results) => Attempt::Items(results),
                    Err(reason) => Attempt::Retry {
                        reason: format!("{}: {reason}", reply.endpoint),
                        retry_after: None,
                    },
                },
            ),
        }
    }
}

impl Sink for ElasticsearchSink {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Installs the ILM policy (when configured), then the index template (unless
    /// `install_template = false`); both are idempotent `PUT`s.
    async fn prepare(&mut self) -> Result<(), SinkError> {
        // The cluster's version, for the log only: `GET /` needs a cluster privilege a loader's
        // API key may lack, so its failure stops nothing (the requests below say what is wrong).
        if let Ok(reply) = self
            .service
            .send(Method::GET, "/", "application/json", None)
            .await
        {
            let info: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            match info.pointer("/version/number").and_then(|n| n.as_str()) {
                Some(version) => tracing::info!(
                    version,
                    endpoint = reply.endpoint,
                    "elasticsearch: connected"
                ),
                None => tracing::info!(
                    status = reply.status,
                    endpoint = reply.endpoint,
                    "elasticsearch: GET / gave no version"
                ),
            }
        }
        let Some(template_name) = self.config.template_name.clone() else {
            return Ok(());
        };
        if let Some(ilm) = self.config.ilm.clone() {
            let data_stream = matches!(self.config.target, Target::DataStream { .. });
            let policy = template::ilm_policy(&ilm, data_stream);
            self.request(
                Method::PUT,
                &format!("/_ilm/policy/{}", ilm.policy_name),
                Some(&policy),
            )
            .await?;
        }
        let template = template::index_template(&self.config);
        self.request(
            Method::PUT,
            &format!("/_index_template/{template_name}"),
            Some(&template),
        )
        .await?;
        tracing::info!(
            template = template_name.as_str(),
            "elasticsearch: index template installed"
        );
        if let Some(bad_template_name) = self.config.bad_template_name.clone() {
            let template = template::bad_rows_template(&self.config);
            self.request(
                Method::PUT,
                &format!("/_index_template/{bad_template_name}"),
                Some(&template),
            )
            .await?;
            tracing::info!(
                template = bad_template_name.as_str(),
                "elasticsearch: bad rows' index template installed"
            );
        }
        Ok(())
    }

    async fn write(&mut self, batch: &[Doc]) -> Result<Vec<Outcome>, SinkError> {
        let encoded = self
            .encoder
            .encode_batch(batch.iter().map(|d| d.json.as_slice()));
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        ElasticsearchMetrics::add(
            &self.metrics.documents_unreadable,
            encoded.unreadable.len() as u64,
        );
        for (doc, reasons) in encoded.unreadable {
            outcomes[doc] = Some(Outcome::Unreadable(reasons));
        }
        // Items (indices into `encoded.items`) to send now, and those refused with 429/5xx that
        // go again after a backoff.
        let mut pending: VecDeque<usize> = (0..encoded.items.len()).collect();
        let mut later: Vec<usize> = Vec::new();
        let mut backoff = self.backoff();
        loop {
            if pending.is_empty() {
                if later.is_empty() {
                    break;
                }
                let wait = backoff.next(None);
                self.warn_retry(
                    &format!("{} documents refused with 429/5xx", later.len()),
                    "sending them again",
                    wait,
                );
                tokio::time::sleep(wait).await;
                pending.extend(later.drain(..));
            }
            let mut body = Vec::new();
            let mut request = Vec::new();
            while let Some(&item) = pending.front() {
                let range = encoded.items[item].1.clone();
                if !body.is_empty() && body.len() + range.len() > self.config.max_request_bytes {
                    break;
                }
                body.extend_from_slice(&encoded.body[range]);
                request.push(item);
                pending.pop_front();
            }
            match self.bulk_once(body, request.len()).await? {
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    ElasticsearchMetrics::add(&self.metrics.bulk_requests_retried, 1);
                    for &item in request.iter().rev() {
                        pending.push_front(item);
                    }
                    let wait = backoff.next(retry_after);
                    self.warn_retry("POST /_bulk", &reason, wait);
                    tokio::time::sleep(wait).await;
                }
                Attempt::Items(results) => {
                    for (&item, result) in request.iter().zip(results) {
                        let doc = encoded.items[item].0;
                        match result {
                            ItemResult::Written { already_present } => {
                                ElasticsearchMetrics::add(&self.metrics.documents_written, 1);
                                if already_present {
                                    ElasticsearchMetrics::add(
                                        &self.metrics.documents_already_present,
                                        1,
                                    );
                                }
                                outcomes[doc] =
                                    Some(if encoded.bad_rows.binary_search(&doc).is_ok() {
                                        Outcome::BadRowWritten
                                    } else {
                                        Outcome::Written
                                    });
                            }
                            ItemResult::Retry(_) => {
                                ElasticsearchMetrics::add(&self.metrics.documents_retried, 1);
                                later.push(item);
                            }
                            ItemResult::Rejected(reason) => {
                                ElasticsearchMetrics::add(&self.metrics.documents_rejected, 1);
                                if let Some(suppressed) = self.rejection_log.allow() {
                                    tracing::warn!(suppressed, origin = ?batch[doc].origin, "elasticsearch: document rejected: {reason}");
                                }
                                outcomes[doc] = Some(Outcome::Rejected(reason));
                            }
                        }
                    }
                    if later.is_empty() && pending.is_empty() {
                        backoff.reset();
                    }
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every document has an outcome"))
            .collect())
    }
}
