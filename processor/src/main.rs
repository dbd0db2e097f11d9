//! `plow-processor`: turns tracker hits from access-log lines into events.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use plowline_collector::logformat::LogFormat;
use plowline_processor::config::Config;
use plowline_processor::inspect::{inspect_line, Counts};
use plowline_processor::offline::{enrich_stream, Counters, Options};
use plowline_processor::output::OutputFormat;
use plowline_processor::sinks::clickhouse::{schema, ClickHouseSink};
use plowline_processor::sinks::config::LoaderConfig;
use plowline_processor::sinks::config::SinkKind;
use plowline_processor::sinks::elasticsearch::ElasticsearchSink;
use plowline_processor::sinks::runner::{self, LoaderMetrics};
use plowline_processor::sinks::Sink;
use plowline_processor::stream;
use std::sync::Arc;

/// mimalloc: the processor allocates many small strings per event; glibc's malloc costs ~20 % of
/// its time (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns Snowplow tracker hits, read from nginx access-log lines, into events.
///
/// `run` is the streaming mode: a Kafka consumer group on the raw-lines topic, enriched events
/// and bad rows produced to their topics, offsets stored only after the broker acknowledged the
/// outputs. `enrich` turns an access log into Snowplow enriched events (JSON or TSV) and bad rows.
/// `load clickhouse|elasticsearch` are the loaders: a consumer group on the enriched-events topic
/// (or an NDJSON file with --input) writing in bulk, offsets stored only after the sink
/// acknowledged; `schema clickhouse` prints the ClickHouse DDL.
/// `parse` shows what plowline reads from each log line: the hit, the tracker parameters and the
/// raw events they decode into, or why a line or an event is refused.
#[derive(Debug, Parser)]
#[command(name = "plow-processor", version, about, long_about)]
struct Cli {
    /// Write logs (stderr) as JSON lines instead of text. The level comes from `RUST_LOG`
    /// (default `info`).
    #[arg(long, global = true, env = "PLOWLINE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream: consume access-log lines from Kafka, produce enriched events and bad rows.
    ///
    /// Reads `kafka.input_topic` in the consumer group `kafka.group`; good events go to
    /// `kafka.good_topic` (key: domain_userid, else network_userid), bad rows to
    /// `kafka.bad_topic`. An input offset is committed only after every output of it (and of the
    /// messages before it) was acknowledged: delivery is at least once, and duplicates carry the
    /// same event_id. Serves `/metrics` and `/healthz` on `metrics.listen`. SIGTERM/SIGINT stop
    /// consuming, wait for in-flight productions (`kafka.shutdown_timeout_ms`), commit, exit 0.
    Run(RunArgs),
    /// Enrich an access log offline (replays, backfills): good events to --output, bad rows to
    /// --bad.
    ///
    /// Every line becomes at least one good event or one bad row (Snowplow's bad-row JSON, one per
    /// line). Counters go to stderr at the end, and a progress bar while running when stderr is a
    /// terminal. Exits 0 unless reading or writing fails; bad input never stops the run.
    Enrich(EnrichArgs),
    /// Load enriched events into a store: ClickHouse or Elasticsearch.
    ///
    /// Reads `kafka.topic` in the consumer group `kafka.group` (default `plowline-<sink>`), writes
    /// batches (`[batch]`: events, bytes, wait), and stores an offset only after its batch was
    /// written and its bad rows (events the sink refused or could not read) were acknowledged
    /// by the broker on `kafka.bad_topic`. Transient failures of the store are retried with
    /// backoff for as long as it takes. Serves `/metrics` and `/healthz` on `metrics.listen`.
    /// SIGTERM/SIGINT: stop consuming, finish the batch being written
    /// (`kafka.shutdown_timeout_ms`), commit, exit 0. With --input, loads an NDJSON file instead
    /// (backfills): bad rows to --bad, a progress bar on a terminal.
    Load {
        /// The store.
        #[command(subcommand)]
        sink: LoadSink,
    },
    /// Print a store's schema.
    Schema {
        /// The store.
        #[command(subcommand)]
        sink: SchemaSink,
    },
    /// Print, as one JSON document per line, what plowline reads from each access-log line.
    ///
    /// Lines that do not parse, or are not tracker hits, are printed with an `error` saying why
    /// (with the field and byte offset for format errors); events with tracker-protocol or schema
    /// violations are printed with every violation. Counts go to stderr at the end.
    Parse {
        /// Access log to read; `-` for stdin.
        #[arg(long, short, default_value = "-")]
        input: String,
        /// The log format: `canonical` (plowline's), `combined` (nginx's default), or an nginx
        /// `log_format` string, optionally prefixed with `escape=json` or `escape=default`.
        #[arg(long, default_value = "canonical")]
        log_format: String,
        /// Where to write the JSON lines; `-` for stdout.
        #[arg(long, short, default_value = "-")]
        output: String,
    },
}

#[derive(Debug, Subcommand)]
enum LoadSink {
    /// Into ClickHouse (`[clickhouse]`): RowBinary inserts into a ReplacingMergeTree keyed by
    /// event_id.
    Clickhouse(LoadArgs),
    /// Into Elasticsearch (`[elasticsearch]`): `_bulk` with `_id` = event_id.
    Elasticsearch(LoadArgs),
}

#[derive(Debug, Subcommand)]
enum SchemaSink {
    /// The events table and the dashboards' materialized views, as SQL for `clickhouse-client
    /// --multiquery` (database and table from --config, else `plowline.events`).
    Clickhouse {
        /// The loader configuration (see processor/examples/loaders.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The loader configuration (see processor/examples/loaders.toml).
    #[arg(long, env = "PLOWLINE_LOADER_CONFIG")]
    config: PathBuf,
    /// Load this NDJSON file of enriched events (`-` for stdin) instead of consuming Kafka. Two
    /// batches are in flight (one finishing while the next streams): memory is about twice a
    /// batch's documents.
    #[arg(long)]
    input: Option<String>,
    /// With --input: where bad rows go, one per line. Default: `<input>.bad`, stderr for stdin.
    #[arg(long)]
    bad: Option<PathBuf>,
    /// Bootstrap brokers, overriding `kafka.brokers`.
    #[arg(long, env = "PLOWLINE_LOADER_BROKERS")]
    brokers: Option<String>,
    /// Consumer group, overriding `kafka.group`.
    #[arg(long, env = "PLOWLINE_LOADER_GROUP")]
    group: Option<String>,
    /// Input topic, overriding `kafka.topic`.
    #[arg(long, env = "PLOWLINE_LOADER_TOPIC")]
    topic: Option<String>,
    /// Address of `/metrics` and `/healthz`, overriding `metrics.listen`.
    #[arg(long, env = "PLOWLINE_LOADER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// ClickHouse URL, overriding `clickhouse.url`.
    #[arg(long, env = "PLOWLINE_LOADER_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The TOML configuration (see processor/examples/processor.toml); defaults when absent.
    #[arg(long, env = "PLOWLINE_PROCESSOR_CONFIG")]
    config: Option<PathBuf>,
    /// Bootstrap brokers, overriding `kafka.brokers`.
    #[arg(long, env = "PLOWLINE_PROCESSOR_BROKERS")]
    brokers: Option<String>,
    /// Consumer group, overriding `kafka.group`.
    #[arg(long, env = "PLOWLINE_PROCESSOR_GROUP")]
    group: Option<String>,
    /// Address of `/metrics` and `/healthz`, overriding `metrics.listen`.
    #[arg(long, env = "PLOWLINE_PROCESSOR_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
struct EnrichArgs {
    /// Access log to read; `-` for stdin.
    #[arg(long, short, default_value = "-")]
    input: String,
    /// Where to write good events, one per line; `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: String,
    /// Where to write bad rows, one per line. Default: `<output>.bad` when --output is a file,
    /// stderr when it is `-`.
    #[arg(long)]
    bad: Option<PathBuf>,
    /// Output format of good events (default: the config's `output.format`, else json).
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// The log format (default: the config's `log_format`, else `canonical`): `canonical`,
    /// `combined`, or an nginx `log_format` string, optionally prefixed with `escape=json`.
    #[arg(long)]
    log_format: Option<String>,
    /// The TOML configuration (see processor/examples/processor.toml).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Enrich(args) => enrich(&args),
        Command::Load { sink } => match sink {
            LoadSink::Clickhouse(args) => load(SinkKind::ClickHouse, args),
            LoadSink::Elasticsearch(args) => load(SinkKind::Elasticsearch, args),
        },
        Command::Schema {
            sink: SchemaSink::Clickhouse { config },
        } => schema_clickhouse(config.as_deref()),
        Command::Parse {
            input,
            log_format,
            output,
        } => parse(&input, &log_format, &output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plow-processor: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(brokers) = args.brokers {
        config.kafka.brokers = brokers;
    }
    if let Some(group) = args.group {
        config.kafka.group = group;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    let config = config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let summary = runtime.block_on(stream::run(&config, stream::shutdown_signal()))?;
    // Tasks still retrying after the shutdown timeout are abandoned: their offsets were not
    // stored, so they are read again after a restart.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if summary.abandoned > 0 {
        tracing::warn!(
            abandoned = summary.abandoned,
            "exited with unacknowledged messages"
        );
    }
    Ok(())
}

fn parse(input: &str, log_format: &str, output: &str) -> anyhow::Result<()> {
    let format = LogFormat::from_spec(log_format)
        .with_context(|| format!("--log-format {log_format:?} is not a usable nginx log_format"))?;
    let reader: Box<dyn BufRead> = if input == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(input).with_context(|| format!("cannot open --input {input}"))?;
        Box::new(BufReader::new(file))
    };
    let writer: Box<dyn Write> = if output == "-" {
        Box::new(io::stdout().lock())
    } else {
        let path = PathBuf::from(output);
        Box::new(File::create(&path).with_context(|| format!("cannot create --output {output}"))?)
    };
    let mut writer = BufWriter::new(writer);
    let mut counts = Counts::default();
    for (number, line) in reader.split(b'\n').enumerate() {
        let mut line = line.with_context(|| format!("cannot read {input}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut doc = inspect_line(&format, &line, &mut counts);
        doc["line"] = (number + 1).into();
        serde_json::to_writer(&mut writer, &doc)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    let Counts {
        lines,
        refused_lines,
        events,
        refused_events,
    } = counts;
    eprintln!(
        "plow-processor parse: {lines} lines ({refused_lines} refused), {events} events \
         ({refused_events} with violations)"
    );
    Ok(())
}

fn enrich(args: &EnrichArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(log_format) = &args.log_format {
        config.log_format.clone_from(log_format);
    }
    if let Some(format) = args.format {
        config.output.format = format;
    }
    let config = config.validate()?;

    let (reader, input_len): (Box<dyn BufRead>, Option<u64>) = if args.input == "-" {
        (
            Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            None,
        )
    } else {
        let file = File::open(&args.input)
            .with_context(|| format!("cannot open --input {}", args.input))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), len)
    };
    let mut good: Box<dyn Write> = if args.output == "-" {
        Box::new(io::stdout().lock())
    } else {
        let file = File::create(&args.output)
            .with_context(|| format!("cannot create --output {}", args.output))?;
        Box::new(file)
    };
    let bad_path = args
        .bad
        .clone()
        .or_else(|| (args.output != "-").then(|| PathBuf::from(format!("{}.bad", args.output))));
    let mut bad: Box<dyn Write> = match &bad_path {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stderr()),
    };

    let bar = (io::stderr().is_terminal() && bad_path.is_some()).then(|| {
        let bar = match input_len {
            Some(len) => indicatif::ProgressBar::new(len),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let clock = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let options = Options {
        log_format: &config.log_format,
        max_line_bytes: config.max_line_bytes,
        output_format: config.output_format,
        enrich: &config.enrichments,
        clock: &clock,
    };
    let started = std::time::Instant::now();
    let counters = enrich_stream(reader, &mut good, &mut bad, &options, |c: &Counters| {
        if let Some(bar) = &bar {
            bar.set_position(c.bytes);
            bar.set_message(format!("{} events, {} bad", c.events, c.bad_total()));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "plow-processor enrich: {counters} in {seconds:.2}s ({:.0} events/s)",
        counters.events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn schema_clickhouse(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let clickhouse = match config {
        Some(path) => LoaderConfig::load(path)?.clickhouse.unwrap_or_default(),
        None => Default::default(),
    };
    clickhouse.validate()?;
    print!("{}", schema::script(&clickhouse));
    Ok(())
}

fn load(kind: SinkKind, args: LoadArgs) -> anyhow::Result<()> {
    let mut config = LoaderConfig::load(&args.config)?;
    if let Some(brokers) = args.brokers {
        config.kafka.brokers = brokers;
    }
    if let Some(group) = args.group {
        config.kafka.group = Some(group);
    }
    if let Some(topic) = args.topic {
        config.kafka.topic = topic;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    if let (Some(url), Some(clickhouse)) = (args.clickhouse_url, config.clickhouse.as_mut()) {
        clickhouse.url = url;
    }
    let settings = config.validate(kind)?;
    let metrics = Arc::new(LoaderMetrics::new(settings.sink));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let input = args.input.clone();
    let bad = args.bad.clone();
    let summary = runtime.block_on(async {
        match (kind, &config) {
            (
                SinkKind::ClickHouse,
                LoaderConfig {
                    clickhouse: Some(c),
                    ..
                },
            ) => {
                let sink = ClickHouseSink::new(c, Arc::clone(&metrics.write_retries));
                run_sink(sink, &settings, metrics, input.as_deref(), bad).await
            }
            (
                SinkKind::Elasticsearch,
                LoaderConfig {
                    elasticsearch: Some(c),
                    ..
                },
            ) => {
                let sink = ElasticsearchSink::new(c)?;
                run_sink(sink, &settings, metrics, input.as_deref(), bad).await
            }
            _ => unreachable!("validate checked the sink's table"),
        }
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    eprintln!("plow-processor load {}: {summary}", kind.name());
    Ok(())
}

/// Runs the loader with `sink`: on `input` (a file, `-` for stdin) when given, else on Kafka.
async fn run_sink<S: Sink + Clone>(
    sink: S,
    settings: &plowline_processor::sinks::config::LoaderSettings,
    metrics: Arc<LoaderMetrics>,
    input: Option<&str>,
    bad: Option<PathBuf>,
) -> anyhow::Result<runner::Summary> {
    let Some(input) = input else {
        return Ok(runner::run_kafka(sink, settings, metrics, stream::shutdown_signal()).await?);
    };
    let (reader, input_len): (Box<dyn BufRead>, Option<u64>) = if input == "-" {
        (
            Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            None,
        )
    } else {
        let file = File::open(input).with_context(|| format!("cannot open --input {input}"))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), len)
    };
    let bad_path = bad.or_else(|| (input != "-").then(|| PathBuf::from(format!("{input}.bad"))));
    let mut bad: Box<dyn Write> = match &bad_path {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(io::stderr()),
    };
    let bar = (io::stderr().is_terminal() && bad_path.is_some()).then(|| {
        let bar = match input_len {
            Some(len) => indicatif::ProgressBar::new(len),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let summary = runner::run_file(
        sink,
        reader,
        &mut bad,
        settings.batch,
        &metrics,
        |bytes, s| {
            if let Some(bar) = &bar {
                bar.set_position(bytes);
                bar.set_message(format!(
                    "{} written, {} bad",
                    s.written,
                    s.unreadable + s.rejected
                ));
            }
        },
    )
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "plow-processor load: {:.0} events/s over {seconds:.2}s",
        summary.read as f64 / seconds.max(1e-9)
    );
    Ok(summary)
}
