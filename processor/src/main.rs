//! `plow-processor`: turns tracker hits from access-log lines into events.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use plowline_collector::logformat::LogFormat;
use plowline_processor::inspect::{inspect_line, Counts};

/// Turns Snowplow tracker hits, read from nginx access-log lines, into events.
///
/// Enrichment (`enrich`, `run`) and the ClickHouse and Elasticsearch loaders are not built yet.
/// `parse` shows what plowline reads from each log line: the hit, the tracker parameters and the
/// raw events they decode into, or why a line or an event is refused.
#[derive(Debug, Parser)]
#[command(name = "plow-processor", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
