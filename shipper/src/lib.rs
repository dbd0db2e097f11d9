//! `plow-shipper`: tails nginx access logs into Kafka, at least once.
//!
//! - [`config`]: the TOML configuration, environment overrides, validation.
//! - [`discover`]: glob expansion, the periodic rescan that finds new and rotated files.
//! - [`fingerprint`]: file identity from the file's first bytes.
//! - [`reader`]: complete lines with their byte offsets, plain or gzip, long lines cut.
//! - [`registry`]: acknowledged offsets per file identity, persisted atomically.
//! - [`kafka`]: the librdkafka producer and its delivery reports.
//! - [`metrics`]: counters and the `/metrics` + `/healthz` endpoint.
//! - [`watch`]: wake-ups: delivery reports and inotify hints (the rescan stays the truth).
//! - [`tailer`]: the loop that ties them together.
//!
//! The invariant: the registry only advances after Kafka's delivery report, over a contiguous
//! prefix of each file.

pub mod config;
pub mod discover;
pub mod fingerprint;
pub mod kafka;
pub mod metrics;
pub mod reader;
pub mod registry;
pub mod tailer;
pub mod watch;
