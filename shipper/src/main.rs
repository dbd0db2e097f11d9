//! `plow-shipper`: the sidecar that tails nginx access logs into Kafka.
//!
//! The tailer itself (inputs, registry, rotation, at-least-once delivery) is not built yet; this
//! binary offers the Kafka connectivity check that the tailer's producer setup will share.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};

/// Tails nginx access logs into Kafka, at least once.
///
/// The log tailer (`plow-shipper run`) is not implemented yet. `check-kafka` verifies that a broker
/// answers and lists its topics, using the same librdkafka client the tailer will use.
#[derive(Debug, Parser)]
#[command(name = "plow-shipper", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to the Kafka brokers and list their topics and partitions.
    CheckKafka {
        /// Comma-separated bootstrap brokers, HOST:PORT.
        #[arg(long, env = "PLOWLINE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// How long to wait for the brokers to answer, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckKafka {
            brokers,
            timeout_ms,
        } => check_kafka(&brokers, Duration::from_millis(timeout_ms)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plow-shipper: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_kafka(brokers: &str, timeout: Duration) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create a Kafka client")?;
    let metadata = producer
        .client()
        .fetch_metadata(None, timeout)
        .with_context(|| {
            format!("no answer from the Kafka brokers at {brokers}: is the broker running and reachable?")
        })?;
    println!(
        "brokers: {}",
        metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{} (id {})", b.host(), b.port(), b.id()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for topic in metadata.topics() {
        println!(
            "topic {}: {} partitions",
            topic.name(),
            topic.partitions().len()
        );
    }
    Ok(())
}
