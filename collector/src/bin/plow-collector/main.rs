//! `plow-collector`: the edge of plowline. Prints the nginx config for the tracker endpoint, or
//! serves the same endpoint itself on machines without nginx.

mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use plowline_collector::nginx::{render_logrotate, EndpointConfig, Standalone};

/// The edge of plowline: the Snowplow tracker endpoint and its access-log format.
///
/// Snowplow trackers send hits to `/i` (GET) or `/com.snowplowanalytics.snowplow/tp2` (POST). nginx
/// answers them and writes one access-log line per hit in plowline's log format; `plow-shipper`
/// ships those lines to Kafka. This program renders that nginx config, or serves the same endpoint
/// itself when nginx is not available.
#[derive(Debug, Parser)]
#[command(name = "plow-collector", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the nginx config for the tracker endpoint.
    ///
    /// By default prints the http-context snippet (the `log_format` and the `server` block) that
    /// `nginx/plowline.conf` holds: include it from your nginx.conf. With `--standalone --prefix DIR`
    /// prints a complete nginx.conf that runs as `nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`,
    /// with every pid, log and temp path under DIR. With `--logrotate` prints a logrotate config for
    /// the access log instead.
    NginxConf(NginxConfArgs),
    /// Serve the tracker endpoint without nginx, writing the same access-log lines.
    ///
    /// Answers `/i` and `/ice.png` with a 1x1 gif, accepts tp2 POST bodies (with CORS), sets the
    /// first-party network-user-id cookie exactly as nginx's userid module does, and appends one
    /// line per request to the access log in plowline's log format.
    Serve(ServeArgs),
}

/// Settings shared by the nginx config and the built-in server.
#[derive(Debug, Args)]
struct EndpointArgs {
    /// Access log that plow-shipper tails.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/log/nginx/tracker.log"
    )]
    access_log: String,
    /// Name of the first-party network-user-id cookie.
    #[arg(long, value_name = "NAME", default_value = "sp")]
    cookie_name: String,
    /// Domain of the cookie, e.g. `.example.com` to share it across subdomains (default: the host
    /// the hit was sent to).
    #[arg(long, value_name = "DOMAIN")]
    cookie_domain: Option<String>,
    /// Lifetime of the cookie in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    cookie_expires_days: u32,
    /// Largest accepted tp2 POST body in bytes; larger ones are answered 413 and logged.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_body_bytes: u32,
}

#[derive(Debug, Args)]
struct NginxConfArgs {
    /// nginx `listen` argument: a port, ADDR:PORT or unix:PATH.
    #[arg(long, value_name = "ADDR", default_value = "80")]
    listen: String,
    /// nginx `server_name`.
    #[arg(long, value_name = "NAME", default_value = "_")]
    server_name: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Print a complete nginx.conf with every path under --prefix.
    #[arg(long, requires = "prefix")]
    standalone: bool,
    /// Prefix directory for --standalone (pid file, error log, temp dirs).
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
    /// Print a logrotate config for the access log instead.
    #[arg(long, conflicts_with = "standalone")]
    logrotate: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Most connections served at once; further ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::NginxConf(args) => nginx_conf(args),
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            serve::run(serve::Options {
                listen: args.listen,
                access_log: args.endpoint.access_log.clone().into(),
                endpoint: endpoint_config(args.endpoint, args.listen.to_string(), "_".into()),
                max_connections: args.max_connections,
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plow-collector: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn endpoint_config(args: EndpointArgs, listen: String, server_name: String) -> EndpointConfig {
    EndpointConfig {
        listen,
        server_name,
        access_log: args.access_log,
        cookie_name: args.cookie_name,
        cookie_domain: args.cookie_domain,
        cookie_expires_days: args.cookie_expires_days,
        max_body_bytes: args.max_body_bytes,
        ..EndpointConfig::default()
    }
}

fn nginx_conf(args: NginxConfArgs) -> anyhow::Result<()> {
    if args.logrotate {
        print!("{}", render_logrotate(&args.endpoint.access_log));
        return Ok(());
    }
    let config = endpoint_config(args.endpoint, args.listen, args.server_name);
    match (args.standalone, args.prefix) {
        (true, Some(prefix)) => {
            let prefix = std::path::absolute(&prefix)?;
            let prefix = prefix
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("--prefix {prefix:?} is not valid UTF-8"))?
                .to_owned();
            print!("{}", config.render_standalone(&Standalone { prefix }));
        }
        (false, Some(_)) => anyhow::bail!("--prefix only applies with --standalone"),
        (_, None) => print!("{}", config.render_http_snippet()),
    }
    Ok(())
}
