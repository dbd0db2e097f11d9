//! The loaders' configuration (`plow-processor load … --config PATH`): a TOML file, every field
//! documented here, unknown keys refused. [`LoaderConfig::validate`] checks it once for one sink.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::clickhouse::config::{ClickHouseConfig, ClickHouseConfigError};
use super::elasticsearch::ElasticsearchConfig;
use crate::config::MetricsConfig;

/// The whole file. One file may configure both sinks; `load clickhouse` uses `[clickhouse]`,
/// `load elasticsearch` uses `[elasticsearch]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// The input topic, the consumer group, the bad-row topic.
    #[serde(default)]
    pub kafka: LoaderKafkaConfig,
    /// When a batch is written.
    #[serde(default)]
    pub batch: BatchConfig,
    /// The ClickHouse sink.
    #[serde(default)]
    pub clickhouse: Option<ClickHouseConfig>,
    /// The Elasticsearch sink.
    #[serde(default)]
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// The `/metrics` and `/healthz` endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderKafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// The topic of enriched events (one JSON event per message).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The consumer group. Default: `plowline-<sink>` (`plowline-clickhouse`,
    /// `plowline-elasticsearch`). Each sink needs a group of its own: two loaders of different
    /// sinks in one group would each load only part of the events.
    #[serde(default)]
    pub group: Option<String>,
    /// The topic loader bad rows are produced to (events a sink refused or could not read).
    #[serde(default = "default_bad_topic")]
    pub bad_topic: String,
    /// On SIGTERM/SIGINT, how long the batch being written may take to finish before the loader
    /// exits without storing its offsets (it is read again after a restart).
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Extra librdkafka properties, passed through as they are to the consumer and the bad-row
    /// producer (e.g. `"security.protocol"`, `"fetch.max.bytes"`). They override plowline's.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for LoaderKafkaConfig {
    fn default() -> Self {
        LoaderKafkaConfig {
            brokers: default_brokers(),
            topic: default_topic(),
            group: None,
            bad_topic: default_bad_topic(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// `[batch]`: a batch is written when it holds `max_events` events or `max_bytes` bytes, or
/// `max_wait_ms` after its first event arrived, whichever comes first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per batch, at most.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Bytes of JSON documents per batch, at most (a single larger document is a batch alone).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Milliseconds a batch waits for more events after its first one.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

fn default_topic() -> String {
    "tracker-enriched".to_owned()
}

fn default_bad_topic() -> String {
    "tracker-bad".to_owned()
}

fn default_shutdown_timeout_ms() -> u64 {
    30_000
}

/// ClickHouse prefers few large inserts (each makes a part on disk).
fn default_max_events() -> usize {
    20_000
}

fn default_max_bytes() -> usize {
    32 << 20
}

fn default_max_wait_ms() -> u64 {
    1_000
}

/// Which sink a loader runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// `[clickhouse]`.
    ClickHouse,
    /// `[elasticsearch]`.
    Elasticsearch,
}

impl SinkKind {
    /// `clickhouse`, `elasticsearch`.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::ClickHouse => "clickhouse",
            SinkKind::Elasticsearch => "elasticsearch",
        }
    }
}

/// A loader configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoaderConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid loader configuration {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, with the line and column.
        #[source]
        source: toml::de::Error,
    },
    /// The sink's table is missing.
    #[error("no [{0}] table in the configuration")]
    NoSink(&'static str),
    /// A `[batch]` limit is zero.
    #[error("batch.max_events, batch.max_bytes and batch.max_wait_ms must be at least 1")]
    Batch,
    /// `metrics.listen` is not a socket address.
    #[error("metrics.listen {listen:?} is not an address (host:port)")]
    MetricsListen {
        /// The value.
        listen: String,
        /// Why.
        #[source]
        source: std::net::AddrParseError,
    },
    /// `[clickhouse]` is unusable.
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseConfigError),
}

/// What the loader runtime uses, checked.
#[derive(Debug, Clone)]
pub struct LoaderSettings {
    /// The sink's name.
    pub sink: &'static str,
    /// `[kafka]`.
    pub kafka: LoaderKafkaConfig,
    /// The consumer group (the configured one, or `plowline-<sink>`).
    pub group: String,
    /// See [`LoaderKafkaConfig::shutdown_timeout_ms`].
    pub shutdown_timeout: Duration,
    /// `[batch]`.
    pub batch: BatchLimits,
    /// See [`MetricsConfig::listen`].
    pub metrics_listen: SocketAddr,
}

/// `[batch]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// See [`BatchConfig::max_events`].
    pub max_events: usize,
    /// See [`BatchConfig::max_bytes`].
    pub max_bytes: usize,
    /// See [`BatchConfig::max_wait_ms`].
    pub max_wait: Duration,
}

impl LoaderConfig {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<LoaderConfig, LoaderConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoaderConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| LoaderConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks the settings of the runtime and of `sink`'s table.
    pub fn validate(&self, sink: SinkKind) -> Result<LoaderSettings, LoaderConfigError> {
        match sink {
            SinkKind::ClickHouse => self
                .clickhouse
                .as_ref()
                .ok_or(LoaderConfigError::NoSink(sink.name()))?
                .validate()?,
            SinkKind::Elasticsearch => {
                if self.elasticsearch.is_none() {
                    return Err(LoaderConfigError::NoSink(sink.name()));
                }
            }
        }
        let batch = &self.batch;
        if batch.max_events == 0 || batch.max_bytes == 0 || batch.max_wait_ms == 0 {
            return Err(LoaderConfigError::Batch);
        }
        let metrics_listen =
            self.metrics
                .listen
                .parse()
                .map_err(|source| LoaderConfigError::MetricsListen {
                    listen: self.metrics.listen.clone(),
                    source,
                })?;
        Ok(LoaderSettings {
            sink: sink.name(),
            group: self
                .kafka
                .group
                .clone()
                .unwrap_or_else(|| format!("plowline-{}", sink.name())),
            kafka: self.kafka.clone(),
            shutdown_timeout: Duration::from_millis(self.kafka.shutdown_timeout_ms),
            batch: BatchLimits {
                max_events: batch.max_events,
                max_bytes: batch.max_bytes,
                max_wait: Duration::from_millis(batch.max_wait_ms),
            },
            metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads_for_both_sinks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/loaders.toml");
        let config = LoaderConfig::load(&path).unwrap();
        let settings = config.validate(SinkKind::ClickHouse).unwrap();
        assert_eq!(settings.kafka.topic, "tracker-enriched");
        assert_eq!(settings.group, "plowline-clickhouse");
        let clickhouse = config.clickhouse.as_ref().unwrap();
        assert_eq!(clickhouse.database, "plowline");
        assert_eq!(clickhouse.table, "events");
        assert_eq!(clickhouse.bad_rows_table, "bad_rows");
        assert!(clickhouse.create_schema);
        assert!(config.validate(SinkKind::Elasticsearch).is_ok());
        let elasticsearch = config.elasticsearch.as_ref().unwrap();
        assert_eq!(elasticsearch.index_prefix, "tracker-events");
        assert_eq!(elasticsearch.bad_index_prefix, "tracker-bad");
    }

    #[test]
    fn defaults_and_refusals() {
        let config: LoaderConfig = toml::from_str("[clickhouse]\n").unwrap();
        let settings = config.validate(SinkKind::ClickHouse).unwrap();
        assert_eq!(settings.group, "plowline-clickhouse");
        assert_eq!(settings.kafka.bad_topic, "tracker-bad");
        assert!(matches!(
            config.validate(SinkKind::Elasticsearch),
            Err(LoaderConfigError::NoSink("elasticsearch"))
        ));
        assert!(toml::from_str::<LoaderConfig>("[kafka]\nnope = 1\n").is_err());
        let config: LoaderConfig =
            toml::from_str("[clickhouse]\n[batch]\nmax_events = 0\n").unwrap();
        assert!(matches!(
            config.validate(SinkKind::ClickHouse),
            Err(LoaderConfigError::Batch)
        ));
    }
}
