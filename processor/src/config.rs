//! `plow-processor`'s configuration: a TOML file, every field documented here (the user doc),
//! unknown keys refused. [`Config::validate`] checks it once and gives a [`ValidatedConfig`] that
//! runtime code uses without re-checking.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plowline_collector::logformat::{CompileError, LogFormat};
use serde::Deserialize;

use crate::enrichments::{Enrichments, EnrichmentsConfig, EnrichmentsError};
use crate::output::OutputFormat;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The access-log format of the input: `canonical` (plowline's), `combined` (nginx's
    /// default), or an nginx `log_format` string, optionally prefixed with `escape=json` or
    /// `escape=default`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Lines longer than this many bytes become `size_violation` bad rows without being parsed.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How good events are written.
    #[serde(default)]
    pub output: OutputConfig,
    /// Kafka, for `plow-processor run`.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The `/metrics` and `/healthz` endpoint of `plow-processor run`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The enrichments, one `[enrichments.<name>]` table each (`user_agent`, `referer`, `geo`,
    /// `anonymize_ip`, …); see the enrichments module for their keys.
    #[serde(default)]
    pub enrichments: EnrichmentsConfig,
}

/// `[output]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// `json` (default: one object per line, contexts flattened as Snowplow's Elasticsearch
    /// loader does) or `tsv` (Snowplow's 131-column enriched TSV).
    #[serde(default)]
    pub format: OutputFormat,
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// The topic of raw access-log lines (one line per message).
    #[serde(default = "default_input_topic")]
    pub input_topic: String,
    /// The topic good events are produced to (key: domain_userid, else network_userid).
    #[serde(default = "default_good_topic")]
    pub good_topic: String,
    /// The topic bad rows are produced to.
    #[serde(default = "default_bad_topic")]
    pub bad_topic: String,
    /// The consumer group.
    #[serde(default = "default_group")]
    pub group: String,
    /// At most this many input messages are being produced at once; the consumer waits
    /// (backpressure) when the limit is reached.
    #[serde(default = "default_max_in_flight_messages")]
    pub max_in_flight_messages: usize,
    /// On SIGTERM/SIGINT, how long to wait for in-flight productions to be acknowledged before
    /// committing what is done and exiting (the rest is consumed again after a restart).
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Extra librdkafka properties, passed through as they are (e.g. `"security.protocol"`),
    /// to the consumer and the producer. They override plowline's settings.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The address of the HTTP endpoint serving `/metrics` (Prometheus text) and `/healthz`,
    /// `host:port`; port 0 picks a free port (logged at startup).
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            input_topic: default_input_topic(),
            good_topic: default_good_topic(),
            bad_topic: default_bad_topic(),
            group: default_group(),
            max_in_flight_messages: default_max_in_flight_messages(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_format: default_log_format(),
            max_line_bytes: default_max_line_bytes(),
            output: OutputConfig::default(),
            kafka: KafkaConfig::default(),
            metrics: MetricsConfig::default(),
            enrichments: EnrichmentsConfig::default(),
        }
    }
}

fn default_log_format() -> String {
    "canonical".to_owned()
}

/// 1 MiB, the size Snowplow's collectors accept by default.
fn default_max_line_bytes() -> usize {
    1 << 20
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

fn default_input_topic() -> String {
    "tracker-raw".to_owned()
}

fn default_good_topic() -> String {
    "tracker-enriched".to_owned()
}

fn default_bad_topic() -> String {
    "tracker-bad".to_owned()
}

fn default_group() -> String {
    "plow-processor".to_owned()
}

fn default_max_in_flight_messages() -> usize {
    10_000
}

fn default_shutdown_timeout_ms() -> u64 {
    30_000
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9101".to_owned()
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    #[error("invalid configuration {path}")]
    Parse {
        /// The file (`<string>` when parsed from text).
        path: PathBuf,
        /// Why, with the line and column.
        #[source]
        source: toml::de::Error,
    },
    /// `log_format` does not compile.
    #[error("log_format {spec:?} is not a usable nginx log_format")]
    LogFormat {
        /// The value.
        spec: String,
        /// Why.
        #[source]
        source: CompileError,
    },
    /// `max_line_bytes` is zero.
    #[error("max_line_bytes must be at least 1")]
    MaxLineBytes,
    /// `kafka.max_in_flight_messages` is zero or too large.
    #[error("kafka.max_in_flight_messages must be between 1 and {}", u32::MAX)]
    MaxInFlight,
    /// `metrics.listen` is not a socket address.
    #[error("metrics.listen {listen:?} is not an address (host:port)")]
    MetricsListen {
        /// The value.
        listen: String,
        /// Why.
        #[source]
        source: std::net::AddrParseError,
    },
    /// An enrichment's settings or files are unusable.
    #[error(transparent)]
    Enrichments(#[from] EnrichmentsError),
}

/// A configuration checked once: the log format compiled, the enrichments' files loaded.
#[derive(Debug)]
pub struct ValidatedConfig {
    /// The compiled log format.
    pub log_format: LogFormat,
    /// See [`Config::max_line_bytes`].
    pub max_line_bytes: usize,
    /// See [`OutputConfig::format`].
    pub output_format: OutputFormat,
    /// See [`Config::kafka`].
    pub kafka: KafkaConfig,
    /// See [`KafkaConfig::shutdown_timeout_ms`].
    pub shutdown_timeout: Duration,
    /// See [`MetricsConfig::listen`].
    pub metrics_listen: SocketAddr,
    /// The enrichments, ready to run.
    pub enrichments: Enrichments,
}

impl Config {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<string>"),
            source,
        })
    }

    /// Checks the configuration and compiles what needs compiling.
    pub fn validate(self) -> Result<ValidatedConfig, ConfigError> {
        let log_format =
            LogFormat::from_spec(&self.log_format).map_err(|source| ConfigError::LogFormat {
                spec: self.log_format.clone(),
                source,
            })?;
        if self.max_line_bytes == 0 {
            return Err(ConfigError::MaxLineBytes);
        }
        if self.kafka.max_in_flight_messages == 0
            || u32::try_from(self.kafka.max_in_flight_messages).is_err()
        {
            return Err(ConfigError::MaxInFlight);
        }
        let metrics_listen =
            self.metrics
                .listen
                .parse()
                .map_err(|source| ConfigError::MetricsListen {
                    listen: self.metrics.listen.clone(),
                    source,
                })?;
        Ok(ValidatedConfig {
            log_format,
            max_line_bytes: self.max_line_bytes,
            output_format: self.output.format,
            shutdown_timeout: Duration::from_millis(self.kafka.shutdown_timeout_ms),
            metrics_listen,
            kafka: self.kafka,
            enrichments: Enrichments::new(&self.enrichments)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/processor.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.kafka.input_topic, "tracker-raw");
        assert_eq!(
            config.enrichments.referer.internal_domains,
            ["shop.example.com"]
        );
        // The example's database paths are placeholders: validation names the missing file.
        let error = config.clone().validate().unwrap_err().to_string();
        assert!(error.contains("path/to/"), "{error}");
        // With the file-backed enrichments using their built-in data, it validates.
        let mut config = config;
        config.enrichments.user_agent.regexes = None;
        config.enrichments.referer.database = None;
        config.enrichments.geo.database = None;
        let validated = config.validate().unwrap();
        assert_eq!(validated.output_format, OutputFormat::Json);
        assert_eq!(validated.metrics_listen.to_string(), "127.0.0.1:9101");
        assert_eq!(validated.kafka.max_in_flight_messages, 10_000);
    }

    #[test]
    fn defaults_fill_an_empty_file() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.kafka.good_topic, "tracker-enriched");
        assert_eq!(config.kafka.bad_topic, "tracker-bad");
        assert_eq!(config.max_line_bytes, 1 << 20);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let error = Config::from_toml("max_line_byte = 3").unwrap_err();
        assert!(
            format!("{:?}", error).contains("unknown field"),
            "{error:?}"
        );
        assert!(Config::from_toml("[kafka]\nbroker = \"x\"").is_err());
        assert!(Config::from_toml("[output]\nformat = \"xml\"").is_err());
        let zero = Config::from_toml("max_line_bytes = 0").unwrap();
        assert!(matches!(zero.validate(), Err(ConfigError::MaxLineBytes)));
        let bad_format = Config::from_toml("log_format = \"$a$b\"").unwrap();
        assert!(bad_format.validate().is_err());
        let listen = Config::from_toml("[metrics]\nlisten = \"localhost\"").unwrap();
        assert!(matches!(
            listen.validate(),
            Err(ConfigError::MetricsListen { .. })
        ));
        let in_flight = Config::from_toml("[kafka]\nmax_in_flight_messages = 0").unwrap();
        assert!(matches!(
            in_flight.validate(),
            Err(ConfigError::MaxInFlight)
        ));
    }
}
