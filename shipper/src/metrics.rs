//! The shipper's counters, rendered as Prometheus text on `/metrics`, and `/healthz`.
//!
//! Names follow `plowline_shipper_<name>_<unit>[_total]`; the only label is `path`, on the
//! per-file lag gauge (one series per tailed file).

use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counters shared between the tailer and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Lines acknowledged by Kafka.
    pub lines: AtomicU64,
    /// Bytes (with `\n`) acknowledged by Kafka.
    pub bytes: AtomicU64,
    /// Lines shipped cut to `max_line_bytes`.
    pub truncated_lines: AtomicU64,
    /// Failed delivery reports (each causes a re-send from the acknowledged offset).
    pub delivery_errors: AtomicU64,
    /// Bytes lost to truncation before they could be read (copytruncate, `> file`).
    pub lost_bytes: AtomicU64,
    /// Files found truncated.
    pub truncations: AtomicU64,
    /// Renamed or deleted files closed before their end (`rotated_follow_max_secs`).
    pub abandoned_files: AtomicU64,
    /// Last successful registry write, Unix milliseconds (0: never).
    pub registry_written_unix_ms: AtomicU64,
    /// Files open.
    pub open_files: AtomicU64,
    /// Per-file lag: (path, bytes in the file not yet acknowledged).
    pub lag: Mutex<Vec<(String, u64)>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self, now_unix_ms: u64) -> String {
        let mut out = String::new();
        let counters = [
            ("lines_total", "Lines acknowledged by Kafka.", &self.lines),
            (
                "bytes_total",
                "Bytes acknowledged by Kafka, newlines included.",
                &self.bytes,
            ),
            (
                "truncated_lines_total",
                "Lines shipped cut to max_line_bytes.",
                &self.truncated_lines,
            ),
            (
                "delivery_errors_total",
                "Failed delivery reports; each causes a re-send.",
                &self.delivery_errors,
            ),
            (
                "lost_bytes_total",
                "Bytes lost to file truncation before being read.",
                &self.lost_bytes,
            ),
            (
                "truncations_total",
                "Files found truncated.",
                &self.truncations,
            ),
            (
                "abandoned_files_total",
                "Rotated files closed before their end.",
                &self.abandoned_files,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP plowline_shipper_{name} {help}");
            let _ = writeln!(out, "# TYPE plowline_shipper_{name} counter");
            let _ = writeln!(
                out,
                "plowline_shipper_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let written = self.registry_written_unix_ms.load(Ordering::Relaxed);
        let age = if written == 0 {
            -1.0
        } else {
            now_unix_ms.saturating_sub(written) as f64 / 1000.0
        };
        let _ = writeln!(
            out,
            "# HELP plowline_shipper_registry_age_seconds Time since the last registry write (-1: never).\n\
             # TYPE plowline_shipper_registry_age_seconds gauge\n\
             plowline_shipper_registry_age_seconds {age}"
        );
        let _ = writeln!(
            out,
            "# HELP plowline_shipper_open_files Files open.\n\
             # TYPE plowline_shipper_open_files gauge\n\
             plowline_shipper_open_files {}",
            self.open_files.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP plowline_shipper_lag_bytes Bytes of a file not yet acknowledged by Kafka.\n\
             # TYPE plowline_shipper_lag_bytes gauge"
        );
        if let Ok(lag) = self.lag.lock() {
            for (path, bytes) in lag.iter() {
                let _ = writeln!(
                    out,
                    "plowline_shipper_lag_bytes{{path=\"{}\"}} {bytes}",
                    escape_label(path)
                );
            }
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `addr` from a background thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &metrics) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })?;
    Ok(local)
}

fn answer(stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics.render(now_unix_ms()),
        ),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_lag() {
        let m = Metrics::default();
        m.lines.store(3, Ordering::Relaxed);
        m.lag.lock().unwrap().push(("/a \"b\".log".into(), 7));
        let text = m.render(0);
        assert!(text.contains("plowline_shipper_lines_total 3\n"), "{text}");
        assert!(text.contains("plowline_shipper_lag_bytes{path=\"/a \\\"b\\\".log\"} 7"));
        assert!(text.contains("plowline_shipper_registry_age_seconds -1"));
    }

    #[test]
    fn http_endpoint_answers() {
        use std::io::Read as _;
        let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::default()).unwrap();
        for (path, want) in [
            ("/healthz", "ok"),
            ("/metrics", "plowline_shipper_lines_total"),
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
            assert!(body.contains(want), "{body}");
        }
    }
}
