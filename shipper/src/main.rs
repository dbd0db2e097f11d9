//! `plow-shipper`: the sidecar that tails nginx access logs into Kafka, at least once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use plowline_shipper::config::{Config, ValidConfig};
use plowline_shipper::metrics::{self, Metrics};
use plowline_shipper::registry;
use plowline_shipper::tailer::Tailer;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};

/// Tails nginx access logs into Kafka, at least once.
///
/// `plow-shipper run --config shipper.toml` follows the files matched by the config's globs
/// (new files, renames and deletions are found by a periodic rescan), produces every line to
/// the Kafka topic (value = the raw line, headers = host, path, file identity, byte offset) and
/// records in a registry how far each file has been acknowledged by Kafka. Nothing is dropped:
/// while the broker is away, the lines wait in the log files and reading pauses; after a crash,
/// reading resumes from the registry, so lines in flight at the crash are shipped again
/// (at least once).
///
/// Environment overrides: PLOWLINE_SHIPPER_KAFKA_BROKERS, PLOWLINE_SHIPPER_KAFKA_TOPIC,
/// PLOWLINE_SHIPPER_REGISTRY_PATH, PLOWLINE_SHIPPER_METRICS_LISTEN. Logs: RUST_LOG
/// (default info). Stops cleanly on SIGTERM/SIGINT: reading stops, in-flight messages are
/// flushed and the registry is written. Exit status: 0 on a clean stop, 1 on an error.
#[derive(Debug, Parser)]
#[command(name = "plow-shipper", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tail the configured files into Kafka until SIGTERM/SIGINT.
    Run {
        /// The TOML config file (see shipper/examples/shipper.toml).
        #[arg(long, env = "PLOWLINE_SHIPPER_CONFIG")]
        config: PathBuf,
        /// Move an unreadable or unwanted registry aside (`registry.json.reset-<ms>`) and start
        /// as on a first start, where `read_from` decides where files found now are read from.
        #[arg(long)]
        reset_registry: bool,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Load and validate a config file (environment overrides applied), then print it.
    CheckConfig {
        /// The TOML config file.
        #[arg(long, env = "PLOWLINE_SHIPPER_CONFIG")]
        config: PathBuf,
    },
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
        Command::Run {
            config,
            reset_registry,
            log_format,
        } => run(&config, reset_registry, log_format),
        Command::CheckConfig { config } => load_config(&config).map(|c| println!("{c:#?}")),
        Command::CheckKafka {
            brokers,
            timeout_ms,
        } => check_kafka(&brokers, Duration::from_millis(timeout_ms)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("plow-shipper: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> anyhow::Result<ValidConfig> {
    let mut config = Config::from_file(path)?;
    config.apply_env(|name| std::env::var(name).ok());
    Ok(config.validate()?)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(config_path: &Path, reset_registry: bool, log_format: LogFormat) -> anyhow::Result<()> {
    init_logs(log_format);
    let config = load_config(config_path)?;
    if reset_registry {
        let aside = registry::reset(&config.registry_file, metrics::now_unix_ms())
            .with_context(|| format!("cannot move {} aside", config.registry_file.display()))?;
        if let Some(aside) = aside {
            tracing::warn!(registry = %aside.display(), "registry moved aside (--reset-registry)");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handlers")?;
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics_listen {
        let local = metrics::serve(addr, Arc::clone(&metrics))
            .with_context(|| format!("cannot listen on {addr} for /metrics"))?;
        tracing::info!(%local, "serving /metrics and /healthz");
    }
    let mut tailer = Tailer::new(config, metrics)?;
    tailer.run(&stop)?;
    Ok(())
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
