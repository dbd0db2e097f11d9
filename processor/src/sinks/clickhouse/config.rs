//! `[clickhouse]`: where and how the ClickHouse loader writes.

use serde::Deserialize;

/// `[clickhouse]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123` (plain HTTP; put a TLS proxy in front
    /// for HTTPS).
    #[serde(default = "default_url")]
    pub url: String,
    /// The database of the events table (an identifier: letters, digits, `_`).
    #[serde(default = "default_database")]
    pub database: String,
    /// The events table (an identifier); the materialized views are named `<table>_<view>`.
    #[serde(default = "default_table")]
    pub table: String,
    /// The bad-rows table (an identifier), in the same database: bad rows read by the loader
    /// (from `tracker-bad`, or found on any topic) are stored there, one row per distinct
    /// document.
    #[serde(default = "default_bad_rows_table")]
    pub bad_rows_table: String,
    /// Create the database, the tables and the views at startup when they do not exist (the DDL
    /// that `plow-processor schema clickhouse` prints). When false, a missing table stops the
    /// loader.
    #[serde(default)]
    pub create_schema: bool,
    /// The user (`X-ClickHouse-User`); the server's default user when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// The password (`X-ClickHouse-Key`).
    #[serde(default)]
    pub password: Option<String>,
    /// A batch is sent as inserts of at most this many rows, each streamed while the next is
    /// decoded (each makes one part per table and view: ClickHouse prefers thousands of rows per
    /// insert).
    #[serde(default = "default_max_insert_rows")]
    pub max_insert_rows: usize,
    /// One insert (one batch, or part of one while a rejected row is isolated) that takes longer
    /// than this many milliseconds is abandoned and retried.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The first wait before retrying an insert that failed for a transient reason (network
    /// error, server down or overloaded); doubled after each failure.
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// The longest wait between two retries. Retries never give up: the batch's offsets wait.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: default_url(),
            database: default_database(),
            table: default_table(),
            bad_rows_table: default_bad_rows_table(),
            create_schema: false,
            user: None,
            password: None,
            max_insert_rows: default_max_insert_rows(),
            request_timeout_ms: default_request_timeout_ms(),
            retry_initial_backoff_ms: default_retry_initial_backoff_ms(),
            retry_max_backoff_ms: default_retry_max_backoff_ms(),
        }
    }
}

fn default_url() -> String {
    "http://127.0.0.1:8123".to_owned()
}

fn default_database() -> String {
    "plowline".to_owned()
}

fn default_table() -> String {
    "events".to_owned()
}

fn default_bad_rows_table() -> String {
    "bad_rows".to_owned()
}

fn default_max_insert_rows() -> usize {
    50_000
}

fn default_request_timeout_ms() -> u64 {
    120_000
}

fn default_retry_initial_backoff_ms() -> u64 {
    200
}

fn default_retry_max_backoff_ms() -> u64 {
    10_000
}

/// Why a `[clickhouse]` table cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseConfigError {
    /// `database`, `table` or `bad_rows_table` is not a plain identifier.
    #[error("clickhouse.{key} {value:?} must be an identifier (ASCII letters, digits, `_`, not starting with a digit)")]
    Identifier {
        /// `database`, `table` or `bad_rows_table`.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// `bad_rows_table` names the events table.
    #[error("clickhouse.bad_rows_table {0:?} must differ from clickhouse.table")]
    SameTable(String),
    /// `url` is not an HTTP URL.
    #[error("clickhouse.url {0:?} must start with http:// (the client has no TLS; use a proxy)")]
    Url(String),
    /// A backoff or timeout is zero, or the initial backoff exceeds the maximum.
    #[error(
        "clickhouse: max_insert_rows, request_timeout_ms and retry_*_backoff_ms must be > 0, \
         initial <= max"
    )]
    Timing,
}

impl ClickHouseConfig {
    /// Checks the values that the loader relies on (`bad_rows_table` must differ from `table`).
    pub fn validate(&self) -> Result<(), ClickHouseConfigError> {
        for (key, value) in [
            ("database", &self.database),
            ("table", &self.table),
            ("bad_rows_table", &self.bad_rows_table),
        ] {
            if !is_identifier(value) {
                return Err(ClickHouseConfigError::Identifier {
                    key,
                    value: value.clone(),
                });
            }
        }
        if self.bad_rows_table == self.table {
            return Err(ClickHouseConfigError::SameTable(self.table.clone()));
        }
        if !self.url.starts_with("http://") {
            return Err(ClickHouseConfigError::Url(self.url.clone()));
        }
        if self.max_insert_rows == 0
            || self.request_timeout_ms == 0
            || self.retry_initial_backoff_ms == 0
            || self.retry_initial_backoff_ms > self.retry_max_backoff_ms
        {
            return Err(ClickHouseConfigError::Timing);
        }
        Ok(())
    }
}

fn is_identifier(value: &str) -> bool {
    let mut bytes = value.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_only() {
        assert!(ClickHouseConfig::default().validate().is_ok());
        let bad = ClickHouseConfig {
            table: "events; DROP TABLE x".into(),
            ..ClickHouseConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ClickHouseConfig {
            url: "https://ch".into(),
            ..ClickHouseConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(!is_identifier("1x"));
        assert!(is_identifier("_events_2"));
    }
}
