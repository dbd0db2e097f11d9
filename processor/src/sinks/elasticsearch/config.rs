//! `[elasticsearch]`: where and how enriched events are indexed. Read once, then checked into a
//! [`Validated`] configuration the sink runs with.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[elasticsearch]`: where and how to index enriched events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's nodes, e.g. `["http://127.0.0.1:9200"]`. Requests go to them
    /// in turn; a node that fails is left for the next one on retry.
    pub endpoints: Vec<String>,
    /// Daily indices are named `<index_prefix>-YYYY.MM.DD`, the day (UTC) of the event's
    /// `derived_tstamp`, else its `collector_tstamp`. The index template matches
    /// `<index_prefix>-*`.
    pub index_prefix: String,
    /// Bad rows read by the loader (from `tracker-bad`, or found on any topic) are indexed into
    /// daily indices `<bad_index_prefix>-YYYY.MM.DD`, the day (UTC) of their
    /// `data.failure.timestamp` (else of the load), with `_id` the SHA-256 of the document. Their
    /// template (`bad_rows_template.json`) matches `<bad_index_prefix>-*`.
    #[serde(default = "default_bad_index_prefix")]
    pub bad_index_prefix: String,
    /// The name of the bad rows' index template (`PUT _index_template/<bad_template_name>`),
    /// installed with the events' one.
    #[serde(default = "default_bad_template_name")]
    pub bad_template_name: String,
    /// Write into this data stream instead of daily indices (`create` operations; the document
    /// gets an `@timestamp`, its `derived_tstamp` else `collector_tstamp`). The index template
    /// then declares the data stream, and rollover is left to the ILM policy.
    #[serde(default)]
    pub data_stream: Option<String>,
    /// The operation of each document: `create` (the default: an `_id` already indexed is left
    /// as it is and counted as written, so a re-delivered event is indexed once) or `index`
    /// (the document replaces any earlier one with its `_id`). Data streams take only `create`.
    #[serde(default)]
    pub op_type: OpType,
    /// Install the index template (and the ILM policy, when configured) before loading.
    #[serde(default = "default_install_template")]
    pub install_template: bool,
    /// The name of the index template (`PUT _index_template/<template_name>`).
    #[serde(default = "default_template_name")]
    pub template_name: String,
    /// An ILM policy to install and name in the template's settings; none by default.
    #[serde(default)]
    pub ilm: Option<IlmConfig>,
    /// An API key as Elasticsearch returns it encoded (`id:api_key` in base64), sent as
    /// `Authorization: ApiKey <api_key>`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The user of basic authentication (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// The password of basic authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust for `https` endpoints, in addition to the
    /// built-in web roots (for a cluster with its own CA, as Elasticsearch sets up by default).
    #[serde(default)]
    pub ca_certificate_path: Option<PathBuf>,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`).
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// A batch whose `_bulk` body is larger is sent as several requests (Elasticsearch refuses
    /// bodies over `http.max_content_length`, 100 MiB by default).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// How long to wait for a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one request may take, in milliseconds; then it is retried.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The first wait before a retry, in milliseconds; it doubles on each retry (with jitter).
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// The longest wait between retries, in milliseconds (a `Retry-After` may ask for more).
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
}

/// `[elasticsearch.ilm]`: the index lifecycle policy installed with the template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IlmConfig {
    /// The policy's name (`PUT _ilm/policy/<policy_name>`).
    #[serde(default = "default_policy_name")]
    pub policy_name: String,
    /// Data streams only: roll over to a new backing index at this age, in hours.
    #[serde(default = "default_rollover_max_age_hours")]
    pub rollover_max_age_hours: u32,
    /// Data streams only: roll over when a primary shard reaches this size, in GiB.
    #[serde(default = "default_rollover_max_primary_shard_size_gb")]
    pub rollover_max_primary_shard_size_gb: u32,
    /// Delete an index this many days after its creation (daily indices) or rollover (data
    /// streams); 0 keeps indices forever.
    #[serde(default = "default_delete_after_days")]
    pub delete_after_days: u32,
}

/// The `_bulk` operation of each document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// Index only if the `_id` is new; a repeated `_id` is a 409 counted as written.
    #[default]
    Create,
    /// Index, replacing a document of the same `_id`.
    Index,
}

impl OpType {
    /// The action name in the `_bulk` body.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Create => "create",
            OpType::Index => "index",
        }
    }
}

fn default_install_template() -> bool {
    true
}
fn default_template_name() -> String {
    "plowline-events".into()
}
fn default_bad_index_prefix() -> String {
    "tracker-bad".into()
}
fn default_bad_template_name() -> String {
    "plowline-bad-rows".into()
}
fn default_gzip() -> bool {
    true
}
fn default_max_request_bytes() -> usize {
    20 << 20
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    60_000
}
fn default_retry_initial_backoff_ms() -> u64 {
    200
}
fn default_retry_max_backoff_ms() -> u64 {
    30_000
}
fn default_policy_name() -> String {
    "plowline-events".into()
}
fn default_rollover_max_age_hours() -> u32 {
    24
}
fn default_rollover_max_primary_shard_size_gb() -> u32 {
    50
}
fn default_delete_after_days() -> u32 {
    30
}

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `<prefix>-YYYY.MM.DD`.
    Daily {
        /// The prefix.
        prefix: String,
    },
    /// One data stream.
    DataStream {
        /// Its name.
        name: String,
    },
}

/// Credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// None.
    None,
    /// `Authorization: ApiKey …`.
    ApiKey(String),
    /// Basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Base URLs, without a trailing `/`.
    pub endpoints: Vec<String>,
    /// Daily indices or a data stream.
    pub target: Target,
    /// The operation of each document.
    pub op_type: OpType,
    /// The template to install, if any: its name.
    pub template_name: Option<String>,
    /// The prefix of the bad rows' daily indices.
    pub bad_prefix: String,
    /// The bad rows' template to install, if any: its name.
    pub bad_template_name: Option<String>,
    /// The ILM policy installed with the template.
    pub ilm: Option<IlmConfig>,
    /// Credentials.
    pub auth: Auth,
    /// Extra CA certificates (PEM).
    pub ca_certificate_path: Option<PathBuf>,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Split larger batches.
    pub max_request_bytes: usize,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
    /// First retry wait.
    pub initial_backoff: Duration,
    /// Longest retry wait.
    pub max_backoff: Duration,
}

/// Why `[elasticsearch]` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No endpoint.
    #[error(
        "[elasticsearch] endpoints is empty: give at least one URL, e.g. \"http://127.0.0.1:9200\""
    )]
    NoEndpoint,
    /// An endpoint that is not an `http(s)://host[:port][/path]` URL.
    #[error("[elasticsearch] endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    /// An index or data stream name Elasticsearch would refuse.
    #[error("[elasticsearch] {key} {name:?}: {why}")]
    Name {
        /// The key.
        key: &'static str,
        /// The value.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Conflicting or incomplete settings.
    #[error("[elasticsearch] {0}")]
    Invalid(&'static str),
}

/// Why `name` cannot name an index (Elasticsearch's rules).
fn index_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().any(|c| c.is_uppercase()) {
        Some("must be lower-case")
    } else if name.starts_with(['_', '-', '+', '.']) {
        Some("must not start with '_', '-', '+' or '.'")
    } else if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        Some("must not contain \\ / * ? \" < > | space , # :")
    } else if name.len() > 200 {
        Some("is too long (at most 200 bytes here, leaving room for the date)")
    } else {
        None
    }
}

impl ElasticsearchConfig {
    /// Checks the configuration once.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoint);
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            let parsed = reqwest::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| ConfigError::Endpoint(endpoint.clone()))?;
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(ConfigError::Endpoint(endpoint.clone()));
            }
            endpoints.push(endpoint.trim_end_matches('/').to_owned());
        }
        let target = match &self.data_stream {
            Some(name) => {
                if let Some(why) = index_name_problem(name) {
                    return Err(ConfigError::Name {
                        key: "data_stream",
                        name: name.clone(),
                        why,
                    });
                }
                if self.op_type != OpType::Create {
                    return Err(ConfigError::Invalid(
                        "a data stream takes only op_type = \"create\"",
                    ));
                }
                Target::DataStream { name: name.clone() }
            }
            None => {
                if let Some(why) = index_name_problem(&self.index_prefix) {
                    return Err(ConfigError::Name {
                        key: "index_prefix",
                        name: self.index_prefix.clone(),
                        why,
                    });
                }
                Target::Daily {
                    prefix: self.index_prefix.clone(),
                }
            }
        };
        let auth =
            match (&self.api_key, &self.username, &self.password) {
                (None, None, None) => Auth::None,
                (Some(key), None, None) if !key.is_empty() => Auth::ApiKey(key.clone()),
                (None, Some(username), Some(password)) => Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                (Some(_), _, _) => return Err(ConfigError::Invalid(
                    "give either api_key or username/password, not both (and not an empty api_key)",
                )),
                _ => return Err(ConfigError::Invalid("username and password go together")),
            };
        if let Some(why) = index_name_problem(&self.bad_index_prefix) {
            return Err(ConfigError::Name {
                key: "bad_index_prefix",
                name: self.bad_index_prefix.clone(),
                why,
            });
        }
        if matches!(&target, Target::Daily { prefix } if *prefix == self.bad_index_prefix) {
            return Err(ConfigError::Invalid(
                "bad_index_prefix must differ from index_prefix",
            ));
        }
        for (key, name) in [
            ("template_name", &self.template_name),
            ("bad_template_name", &self.bad_template_name),
        ] {
            if index_name_problem(name).is_some() {
                return Err(ConfigError::Name {
                    key,
                    name: name.clone(),
                    why: "must be a lower-case name without special characters",
                });
            }
        }
        if self.bad_template_name == self.template_name {
            return Err(ConfigError::Invalid(
                "bad_template_name must differ from template_name",
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_request_bytes must be at least 1024",
            ));
        }
        if self.retry_initial_backoff_ms == 0
            || self.retry_max_backoff_ms < self.retry_initial_backoff_ms
        {
            return Err(ConfigError::Invalid(
                "retry_initial_backoff_ms must be positive and at most retry_max_backoff_ms",
            ));
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid("timeouts must be positive"));
        }
        Ok(Validated {
            endpoints,
            target,
            op_type: self.op_type,
            template_name: self.install_template.then(|| self.template_name.clone()),
            bad_prefix: self.bad_index_prefix.clone(),
            bad_template_name: self
                .install_template
                .then(|| self.bad_template_name.clone()),
            ilm: self.ilm.clone(),
            auth,
            ca_certificate_path: self.ca_certificate_path.clone(),
            gzip: self.gzip,
            max_request_bytes: self.max_request_bytes,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ElasticsearchConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_two_required_keys_are_enough() {
        let config =
            parse("endpoints = [\"http://127.0.0.1:9200/\"]\nindex_prefix = \"tracker-events\"")
                .unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(valid.endpoints, ["http://127.0.0.1:9200"]);
        assert_eq!(
            valid.target,
            Target::Daily {
                prefix: "tracker-events".into()
            }
        );
        assert_eq!(valid.op_type, OpType::Create);
        assert_eq!(valid.template_name.as_deref(), Some("plowline-events"));
        assert_eq!(valid.bad_prefix, "tracker-bad");
        assert_eq!(
            valid.bad_template_name.as_deref(),
            Some("plowline-bad-rows")
        );
        assert!(valid.gzip);
        assert_eq!(valid.auth, Auth::None);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(parse("endpoints = []\nindex_prefix = \"x\"\nindex_suffix = 1").is_err());
        let bad = [
            ("endpoints = []\nindex_prefix = \"x\"", "endpoints is empty"),
            ("endpoints = [\"ftp://h\"]\nindex_prefix = \"x\"", "not an http"),
            ("endpoints = [\"http://h\"]\nindex_prefix = \"Tracker\"", "lower-case"),
            (
                "endpoints = [\"http://h\"]\nindex_prefix = \"x\"\napi_key = \"k\"\nusername = \"u\"\npassword = \"p\"",
                "not both",
            ),
            ("endpoints = [\"http://h\"]\nindex_prefix = \"x\"\nusername = \"u\"", "go together"),
            (
                "endpoints = [\"http://h\"]\nindex_prefix = \"x\"\ndata_stream = \"events\"\nop_type = \"index\"",
                "only op_type",
            ),
            (
                "endpoints = [\"http://h\"]\nindex_prefix = \"x\"\nbad_index_prefix = \"x\"",
                "must differ",
            ),
            (
                "endpoints = [\"http://h\"]\nindex_prefix = \"x\"\nbad_index_prefix = \"Bad\"",
                "lower-case",
            ),
        ];
        for (text, message) in bad {
            let error = parse(text).unwrap().validate().unwrap_err().to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn data_stream_and_ilm() {
        let config = parse(
            "endpoints = [\"https://es:9200\"]\nindex_prefix = \"x\"\ndata_stream = \"logs-plowline-events\"\n[ilm]\ndelete_after_days = 7",
        )
        .unwrap();
        let valid = config.validate().unwrap();
        assert_eq!(
            valid.target,
            Target::DataStream {
                name: "logs-plowline-events".into()
            }
        );
        let ilm = valid.ilm.unwrap();
        assert_eq!(
            (
                ilm.policy_name.as_str(),
                ilm.delete_after_days,
                ilm.rollover_max_age_hours
            ),
            ("plowline-events", 7, 24)
        );
    }
}
