//! Exponential backoff for inserts that failed for a transient reason, and the WARN line that
//! says so at most every few seconds however often it fails.

use std::time::{Duration, Instant};

/// How long to wait before the next attempt: the initial wait, doubled after each failure, up
/// to the maximum.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, never waits longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { next: initial, max }
    }

    /// The wait before the next attempt; the one after will be twice as long (up to the max).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// Logs a failing request at WARN on the first failure and then at most once per
/// [`RetryLog::EVERY`], at DEBUG otherwise, so that an outage gives a few lines, not thousands.
#[derive(Debug)]
pub struct RetryLog {
    started: Instant,
    last_warn: Option<Instant>,
    attempts: u64,
}

impl RetryLog {
    /// The shortest time between two WARN lines.
    pub const EVERY: Duration = Duration::from_secs(10);

    /// Nothing failed yet.
    pub fn new() -> RetryLog {
        RetryLog {
            started: Instant::now(),
            last_warn: None,
            attempts: 0,
        }
    }

    /// Records a failure of `what` with `error`, retried after `wait`.
    pub fn failed(&mut self, what: &str, error: &str, wait: Duration) {
        self.attempts += 1;
        let now = Instant::now();
        let warn = self.last_warn.is_none_or(|last| now - last >= Self::EVERY);
        let failing_for_s = (now - self.started).as_secs();
        let wait_ms = wait.as_millis() as u64;
        if warn {
            self.last_warn = Some(now);
            tracing::warn!(
                %error,
                attempts = self.attempts,
                failing_for_s,
                wait_ms,
                "{what} failed; retrying"
            );
        } else {
            tracing::debug!(%error, attempts = self.attempts, wait_ms, "{what} failed; retrying");
        }
    }

    /// Logs the recovery after failures, if there were any.
    pub fn recovered(&self, what: &str) {
        if self.attempts > 0 {
            tracing::info!(
                attempts = self.attempts,
                failing_for_s = self.started.elapsed().as_secs(),
                "{what} succeeded after retries"
            );
        }
    }
}

impl Default for RetryLog {
    fn default() -> Self {
        RetryLog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<_> = (0..4).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }
}
