//! plow-processor: turns access-log lines into Snowplow-compatible enriched events.
//!
//! - [`pipeline`]: the pure core, one line in, good events and bad rows out;
//! - [`event`]: the enriched event, Snowplow's 131 canonical fields;
//! - [`badrow`]: Snowplow bad rows for every failure;
//! - [`output`]: the JSON and TSV encoders of good events;
//! - [`config`]: the TOML configuration;
//! - [`offline`]: `plow-processor enrich`, files in, files out;
//! - [`stream`]: `plow-processor run`, Kafka in, Kafka out, offsets stored after acknowledgement;
//! - [`inspect`]: `plow-processor parse`, what the collector library reads from each line.
//! - [`sinks`]: the loaders, enriched events into ClickHouse and Elasticsearch.

pub mod badrow;
pub mod config;
pub mod enrichments;
pub mod event;
pub mod inspect;
pub mod offline;
pub mod output;
pub mod pipeline;
pub mod sinks;
pub mod stream;

pub use event::EnrichedEvent;
