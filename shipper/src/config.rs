//! The shipper's configuration: TOML as users write it, environment overrides for sidecar use,
//! and the validated form that the rest of the crate runs on.
//!
//! ```toml
//! [[inputs]]
//! paths = ["/var/log/nginx/tracker*.log"]
//! read_from = "beginning"
//! [kafka]
//! brokers = "127.0.0.1:9092"
//! topic = "tracker-raw"
//! [registry]
//! path = "/var/lib/plowline/shipper"
//! ```
//!
//! Environment overrides (applied after the file, before validation):
//!
//! | variable | key |
//! |---|---|
//! | `PLOWLINE_SHIPPER_KAFKA_BROKERS` | `kafka.brokers` |
//! | `PLOWLINE_SHIPPER_KAFKA_TOPIC` | `kafka.topic` |
//! | `PLOWLINE_SHIPPER_REGISTRY_PATH` | `registry.path` |
//! | `PLOWLINE_SHIPPER_METRICS_LISTEN` | `metrics.listen` |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Environment variable overriding `kafka.brokers`.
pub const ENV_KAFKA_BROKERS: &str = "PLOWLINE_SHIPPER_KAFKA_BROKERS";
/// Environment variable overriding `kafka.topic`.
pub const ENV_KAFKA_TOPIC: &str = "PLOWLINE_SHIPPER_KAFKA_TOPIC";
/// Environment variable overriding `registry.path`.
pub const ENV_REGISTRY_PATH: &str = "PLOWLINE_SHIPPER_REGISTRY_PATH";
/// Environment variable overriding `metrics.listen`.
pub const ENV_METRICS_LISTEN: &str = "PLOWLINE_SHIPPER_METRICS_LISTEN";

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent with another one.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The configuration file, as written by users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Groups of log files to tail; at least one.
    pub inputs: Vec<InputConfig>,
    /// Where the lines go.
    pub kafka: KafkaConfig,
    /// Where the read offsets are kept.
    pub registry: RegistryConfig,
    /// Discovery and rotation tuning, shared by all inputs.
    #[serde(default)]
    pub files: FilesConfig,
    /// The `/metrics` and `/healthz` endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Where reading starts in a file found at the shipper's first start (no registry yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Ship the files' whole content.
    Beginning,
    /// Ship only lines written after the first start.
    End,
}

/// One group of log files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Glob patterns of the files to tail (`*`, `?`, `[...]`, `**`). Files that appear later are
    /// picked up at the next scan.
    pub paths: Vec<String>,
    /// Glob patterns of files to leave alone even when `paths` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For files found at the shipper's first start (no registry yet): `beginning` ships their
    /// whole content, `end` only what is written afterwards. Files that appear later, and files
    /// found when a registry exists, are always read from their beginning.
    #[serde(default = "default_read_from")]
    pub read_from: ReadFrom,
    /// Files not modified for this many seconds when first seen are not read (0: no limit).
    #[serde(default)]
    pub ignore_older_secs: u64,
    /// Lines longer than this are shipped cut to this length, with the header
    /// `plowline.truncated` giving their real length, and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// The Kafka producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `HOST:PORT` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// The topic every line is produced to; it must exist.
    pub topic: String,
    /// Compression codec: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// librdkafka `acks`; `all` (the default) is what makes delivery reports mean "stored".
    #[serde(default = "default_acks")]
    pub acks: String,
    /// librdkafka `enable.idempotence`: no duplicates from the producer's own retries.
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// librdkafka `linger.ms`: how long a batch waits to fill.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Most messages produced but not yet acknowledged; reading pauses at this bound, which
    /// keeps memory bounded while the broker is away (the data waits in the log files).
    #[serde(default = "default_max_in_flight_messages")]
    pub max_in_flight_messages: usize,
    /// Pause before re-sending from the last acknowledged offset after a delivery error; doubled
    /// after each further failed round, up to `retry_backoff_max_ms`.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// The longest pause between two re-sends while deliveries keep failing.
    #[serde(default = "default_retry_backoff_max_ms")]
    pub retry_backoff_max_ms: u64,
    /// Any librdkafka property, passed through as is and applied last (TLS: `security.protocol`,
    /// `ssl.ca.location`, ...; SASL: `sasl.mechanisms`, `sasl.username`, ...;
    /// `message.timeout.ms`, ...).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// The registry of read offsets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Directory of the registry (`registry.json` inside); created if missing.
    pub path: PathBuf,
    /// How often acknowledged offsets are written to disk. Lines acknowledged since the last
    /// write are shipped again after a crash (never after a clean stop).
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Entries of files not seen for this long are dropped from the registry.
    #[serde(default = "default_forget_after_secs")]
    pub forget_after_secs: u64,
}

/// The HTTP endpoint for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` to listen on; empty disables the endpoint.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

fn default_read_from() -> ReadFrom {
    ReadFrom::Beginning
}
fn default_max_line_bytes() -> usize {
    64 * 1024
}
fn default_compression() -> String {
    "lz4".to_owned()
}
fn default_acks() -> String {
    "all".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_linger_ms() -> u64 {
    20
}
fn default_max_in_flight_messages() -> usize {
    50_000
}
fn default_retry_backoff_ms() -> u64 {
    1_000
}
fn default_retry_backoff_max_ms() -> u64 {
    30_000
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_forget_after_secs() -> u64 {
    7 * 24 * 3600
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".to_owned()
}

/// Tuning of discovery and rotation, with defaults; set under `[files]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// How often the globs are expanded again (the source of truth for new and rotated files;
    /// inotify hints trigger a scan sooner).
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// How often open files are polled for new bytes once they are at their end (at most
    /// 200 ms apart in any case; inotify hints wake the reader sooner).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// After an inotify hint, reading waits until this long after the previous read, so that
    /// lines nginx writes in quick succession are read and sent together: one wake-up per
    /// interval instead of one per line (adds at most this much latency; 0 reads at every hint).
    #[serde(default = "default_coalesce_ms")]
    pub coalesce_ms: u64,
    /// Bytes at the head of a file that identify it (its fingerprint). Shorter files are
    /// identified by device and inode plus their bytes so far until they reach this size.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// A file renamed away or deleted is read to its end; it is closed once it has not grown for
    /// this long.
    #[serde(default = "default_rotated_close_idle_ms")]
    pub rotated_close_idle_ms: u64,
    /// Upper bound on following a renamed or deleted file that keeps growing; hitting it is logged
    /// with the number of bytes left unread.
    #[serde(default = "default_rotated_follow_max_secs")]
    pub rotated_follow_max_secs: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            scan_interval_ms: default_scan_interval_ms(),
            poll_interval_ms: default_poll_interval_ms(),
            coalesce_ms: default_coalesce_ms(),
            fingerprint_bytes: default_fingerprint_bytes(),
            rotated_close_idle_ms: default_rotated_close_idle_ms(),
            rotated_follow_max_secs: default_rotated_follow_max_secs(),
        }
    }
}

fn default_scan_interval_ms() -> u64 {
    1_000
}
fn default_poll_interval_ms() -> u64 {
    100
}
fn default_coalesce_ms() -> u64 {
    5
}
fn default_fingerprint_bytes() -> usize {
    1024
}
fn default_rotated_close_idle_ms() -> u64 {
    5_000
}
fn default_rotated_follow_max_secs() -> u64 {
    300
}

/// One input, validated: compiled globs.
#[derive(Debug, Clone)]
pub struct Input {
    /// Compiled include patterns.
    pub include: Vec<glob::Pattern>,
    /// Compiled exclude patterns.
    pub exclude: Vec<glob::Pattern>,
    /// Start position for files found at first start.
    pub read_from: ReadFrom,
    /// Files older than this at first sight are skipped.
    pub ignore_older: Option<Duration>,
    /// Longest line shipped whole.
    pub max_line_bytes: usize,
}

/// The configuration after validation: what the shipper runs on.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The inputs, in file order.
    pub inputs: Vec<Input>,
    /// Kafka settings (checked: non-empty brokers and topic, known compression).
    pub kafka: KafkaConfig,
    /// The registry file (`<registry.path>/registry.json`).
    pub registry_file: PathBuf,
    /// Interval between registry writes.
    pub registry_flush_interval: Duration,
    /// Registry entries of files unseen for this long are dropped.
    pub registry_forget_after: Duration,
    /// Discovery and rotation tuning.
    pub files: FilesConfig,
    /// Metrics endpoint address, if enabled.
    pub metrics_listen: Option<SocketAddr>,
}

impl Config {
    /// Reads and parses a config file (no environment overrides, no validation).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Applies the `PLOWLINE_SHIPPER_*` overrides, read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var(ENV_KAFKA_BROKERS) {
            self.kafka.brokers = v;
        }
        if let Some(v) = var(ENV_KAFKA_TOPIC) {
            self.kafka.topic = v;
        }
        if let Some(v) = var(ENV_REGISTRY_PATH) {
            self.registry.path = PathBuf::from(v);
        }
        if let Some(v) = var(ENV_METRICS_LISTEN) {
            self.metrics.listen = v;
        }
    }

    /// Checks every value once and compiles the globs.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        if self.inputs.is_empty() {
            return Err(invalid("at least one [[inputs]] is needed".into()));
        }
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (i, input) in self.inputs.into_iter().enumerate() {
            if input.paths.is_empty() {
                return Err(invalid(format!("inputs[{i}].paths is empty")));
            }
            let compile = |patterns: &[String], key: &str| {
                patterns
                    .iter()
                    .map(|p| {
                        glob::Pattern::new(p)
                            .map_err(|e| invalid(format!("inputs[{i}].{key}: bad glob {p:?}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            if input.max_line_bytes < 16 {
                return Err(invalid(format!(
                    "inputs[{i}].max_line_bytes must be at least 16"
                )));
            }
            inputs.push(Input {
                include: compile(&input.paths, "paths")?,
                exclude: compile(&input.exclude, "exclude")?,
                read_from: input.read_from,
                ignore_older: (input.ignore_older_secs > 0)
                    .then(|| Duration::from_secs(input.ignore_older_secs)),
                max_line_bytes: input.max_line_bytes,
            });
        }
        let kafka = self.kafka;
        if kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers is empty".into()));
        }
        if kafka.topic.trim().is_empty() {
            return Err(invalid("kafka.topic is empty".into()));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&kafka.compression.as_str()) {
            return Err(invalid(format!(
                "kafka.compression {:?}: expected none, gzip, snappy, lz4 or zstd",
                kafka.compression
            )));
        }
        if kafka.max_in_flight_messages == 0 {
            return Err(invalid("kafka.max_in_flight_messages must be > 0".into()));
        }
        if self.files.fingerprint_bytes == 0 || self.files.scan_interval_ms == 0 {
            return Err(invalid(
                "files.fingerprint_bytes and files.scan_interval_ms must be > 0".into(),
            ));
        }
        let metrics_listen =
            if self.metrics.listen.is_empty() {
                None
            } else {
                Some(self.metrics.listen.parse().map_err(|e| {
                    invalid(format!("metrics.listen {:?}: {e}", self.metrics.listen))
                })?)
            };
        Ok(ValidConfig {
            inputs,
            kafka,
            registry_file: self.registry.path.join("registry.json"),
            registry_flush_interval: Duration::from_millis(self.registry.flush_interval_ms),
            registry_forget_after: Duration::from_secs(self.registry.forget_after_secs),
            files: self.files,
            metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[inputs]]
paths = ["/var/log/nginx/tracker*.log"]
read_from = "beginning"
[kafka]
brokers = "127.0.0.1:9092"
topic = "tracker-raw"
[registry]
path = "/var/lib/plowline/shipper"
"#;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config: Config = toml::from_str(MINIMAL).unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(valid.kafka.compression, "lz4");
        assert_eq!(valid.kafka.acks, "all");
        assert!(valid.kafka.idempotence);
        assert_eq!(
            valid.registry_file,
            Path::new("/var/lib/plowline/shipper/registry.json")
        );
        assert_eq!(valid.inputs[0].read_from, ReadFrom::Beginning);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = MINIMAL.replace("read_from", "read_form");
        assert!(toml::from_str::<Config>(&text).is_err());
    }

    #[test]
    fn environment_overrides_win() {
        let mut config: Config = toml::from_str(MINIMAL).unwrap();
        config.apply_env(|name| match name {
            ENV_KAFKA_TOPIC => Some("other".into()),
            ENV_REGISTRY_PATH => Some("/tmp/reg".into()),
            _ => None,
        });
        let valid = config.validate().unwrap();
        assert_eq!(valid.kafka.topic, "other");
        assert_eq!(valid.registry_file, Path::new("/tmp/reg/registry.json"));
        assert_eq!(valid.kafka.brokers, "127.0.0.1:9092");
    }

    #[test]
    fn bad_values_are_explained() {
        let text = MINIMAL.replace("tracker-raw", "");
        let err = toml::from_str::<Config>(&text)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("kafka.topic"), "{err}");
    }

    #[test]
    fn shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shipper.toml");
        Config::from_file(&path).unwrap().validate().unwrap();
    }
}
