//! Counters of the sink, rendered in the Prometheus text format by the loader's `/metrics`, and
//! a rate limit for its warnings.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the Elasticsearch sink did, since it started. Every document of a batch ends as exactly
/// one of written, rejected or unreadable; retried counts the times documents were sent again.
#[derive(Debug, Default)]
pub struct ElasticsearchMetrics {
    /// Documents indexed, or already there (a `create` of a known `_id`).
    pub documents_written: AtomicU64,
    /// Of those written, how many were already there (409 on `create`).
    pub documents_already_present: AtomicU64,
    /// Item-level 429/5xx refusals, each followed by a retry of that document alone.
    pub documents_retried: AtomicU64,
    /// Documents refused for their content (400 mapping errors …), returned as rejected.
    pub documents_rejected: AtomicU64,
    /// Documents that are not readable enriched events.
    pub documents_unreadable: AtomicU64,
    /// `_bulk` requests sent.
    pub bulk_requests: AtomicU64,
    /// Whole requests that failed transiently (connection, timeout, 429, 5xx) and were retried.
    pub bulk_requests_retried: AtomicU64,
    /// Bytes of request bodies sent, after compression.
    pub request_bytes: AtomicU64,
}

impl ElasticsearchMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as `plowline_loader_elasticsearch_*_total` in the Prometheus text format.
    pub fn render(&self) -> String {
        let counters: [(&str, &AtomicU64, &str); 8] = [
            (
                "documents_written",
                &self.documents_written,
                "Documents indexed or already present.",
            ),
            (
                "documents_already_present",
                &self.documents_already_present,
                "Documents whose _id was already indexed (409 on create).",
            ),
            (
                "documents_retried",
                &self.documents_retried,
                "Documents refused with 429/5xx and sent again.",
            ),
            (
                "documents_rejected",
                &self.documents_rejected,
                "Documents refused for their content, sent to bad rows.",
            ),
            (
                "documents_unreadable",
                &self.documents_unreadable,
                "Documents that are not readable enriched events.",
            ),
            ("bulk_requests", &self.bulk_requests, "_bulk requests sent."),
            (
                "bulk_requests_retried",
                &self.bulk_requests_retried,
                "_bulk requests failed transiently and retried.",
            ),
            (
                "request_bytes",
                &self.request_bytes,
                "Bytes of request bodies sent, after compression.",
            ),
        ];
        let mut out = String::new();
        for (name, counter, help) in counters {
            let name = format!("plowline_loader_elasticsearch_{name}_total");
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Lets through at most `per_window` messages per `window`, counting the others.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    per_window: u32,
    window: Duration,
    start: Instant,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// At most `per_window` messages per `window`.
    pub fn new(per_window: u32, window: Duration) -> LogLimiter {
        LogLimiter {
            per_window,
            window,
            start: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a message may be logged now, `n` being how many were held back since the
    /// last one logged; `None` when it must be held back.
    pub fn allow(&mut self) -> Option<u64> {
        if self.start.elapsed() >= self.window {
            self.start = Instant::now();
            self.used = 0;
        }
        if self.used < self.per_window {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_counter() {
        let metrics = ElasticsearchMetrics::default();
        ElasticsearchMetrics::add(&metrics.documents_rejected, 3);
        let text = metrics.render();
        assert!(
            text.contains("\nplowline_loader_elasticsearch_documents_rejected_total 3\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 8);
    }

    #[test]
    fn the_limiter_counts_what_it_holds_back() {
        let mut limiter = LogLimiter::new(2, Duration::from_millis(50));
        assert_eq!(
            (
                limiter.allow(),
                limiter.allow(),
                limiter.allow(),
                limiter.allow()
            ),
            (Some(0), Some(0), None, None)
        );
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limiter.allow(), Some(2));
    }
}
