//! `plow-es-test-server`: the Elasticsearch stand-in of the tests, as a process, for trying the
//! loader by hand or from scripts.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use plowline_es_test_server::{Fault, Options, TestServer};

/// Serves the documented Elasticsearch `_bulk`, index template and ILM endpoints on loopback,
/// with optional fault injection into `_bulk` requests. Prints its address, then serves until
/// killed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Faults for the first `_bulk` requests, one each, comma-separated: pass, STATUS[/RETRY_AFTER_S]
    /// (e.g. 429/1, 503), items-429:FRACTION, delay:MS, reset, reset-after.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// The fault of every later `_bulk` request.
    #[arg(long, default_value = "pass")]
    default_fault: Fault,
    /// Require `Authorization: ApiKey <KEY>`.
    #[arg(long)]
    api_key: Option<String>,
    /// Seed of the random draws.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = TestServer::start(Options {
        listen: args.listen,
        api_key: args.api_key,
        seed: args.seed,
        ..Options::default()
    })
    .with_context(|| format!("listening on {}", args.listen))?;
    server.push_faults(args.faults);
    server.set_default_fault(args.default_fault);
    println!("{}", server.url());
    server.wait();
    Ok(())
}
