//! The counters of `plow-processor run` and the tiny HTTP server that exposes them:
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::StreamError;
use crate::badrow::BadRowType;

/// Counters and gauges, shared by the consumer loop, the delivery tasks and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Input messages (access-log lines) consumed.
    pub lines: AtomicU64,
    /// Good events produced (enqueued).
    pub events: AtomicU64,
    /// Bad rows produced (enqueued), indexed like [`BadRowType::ALL`].
    pub bad_rows: [AtomicU64; BadRowType::ALL.len()],
    /// Productions that failed (enqueue or final delivery error) and were retried.
    pub produce_errors: AtomicU64,
    /// Producers replaced because they kept failing.
    pub producers_replaced: AtomicU64,
    /// Offsets stored for commit.
    pub offsets_stored: AtomicU64,
    /// Input messages whose outputs are not all acknowledged yet.
    pub in_flight: AtomicU64,
    /// False once shutdown has begun.
    pub healthy: AtomicBool,
}

impl Metrics {
    /// Fresh counters, healthy.
    pub fn new() -> Metrics {
        let metrics = Metrics::default();
        metrics.healthy.store(true, Ordering::Relaxed);
        metrics
    }

    /// Counts one bad row of `kind`.
    pub fn bad_row(&self, kind: BadRowType) {
        if let Some(i) = BadRowType::ALL.iter().position(|k| *k == kind) {
            self.bad_rows[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "plowline_processor_lines_total",
            "Input messages (access-log lines) consumed.",
            load(&self.lines),
        );
        counter(
            &mut out,
            "plowline_processor_events_total",
            "Good events produced.",
            load(&self.events),
        );
        out.push_str(
            "# HELP plowline_processor_bad_rows_total Bad rows produced, by type.\n\
             # TYPE plowline_processor_bad_rows_total counter\n",
        );
        for (kind, value) in BadRowType::ALL.iter().zip(&self.bad_rows) {
            let _ = writeln!(
                out,
                "plowline_processor_bad_rows_total{{type=\"{}\"}} {}",
                kind.name(),
                load(value)
            );
        }
        counter(
            &mut out,
            "plowline_processor_produce_errors_total",
            "Productions that failed and were retried.",
            load(&self.produce_errors),
        );
        counter(
            &mut out,
            "plowline_processor_producers_replaced_total",
            "Producers replaced by a new one because they kept failing.",
            load(&self.producers_replaced),
        );
        counter(
            &mut out,
            "plowline_processor_offsets_stored_total",
            "Input offsets stored for commit after their outputs were acknowledged.",
            load(&self.offsets_stored),
        );
        let _ = write!(
            out,
            "# HELP plowline_processor_in_flight_messages Input messages whose outputs are not \
             all acknowledged yet.\n# TYPE plowline_processor_in_flight_messages gauge\n\
             plowline_processor_in_flight_messages {}\n",
            load(&self.in_flight)
        );
        out
    }
}

/// What the HTTP endpoint serves: the Prometheus text and the health state. Implemented by the
/// processor's [`Metrics`] and by the loaders' counters.
pub trait Exposition: Send + Sync + 'static {
    /// The Prometheus text exposition (format 0.0.4).
    fn render(&self) -> String;
    /// False once shutdown has begun (`/healthz` answers 503).
    fn healthy(&self) -> bool;
}

impl Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// Binds `listen` (port 0 picks a free port); returns the listener and its address.
pub async fn bind(listen: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Binds `listen` and serves `metrics` there from a task of its own (abort it to stop), logging
/// the address once it listens: what every long-running mode of the processor does first.
pub async fn start<M: Exposition>(
    listen: SocketAddr,
    metrics: Arc<M>,
) -> Result<tokio::task::JoinHandle<()>, StreamError> {
    let (listener, addr) = bind(listen).await.map_err(|source| StreamError::Metrics {
        addr: listen,
        source,
    })?;
    tracing::info!(%addr, "metrics endpoint listening (/metrics, /healthz)");
    Ok(tokio::spawn(serve(listener, metrics)))
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve<M: Exposition>(listener: TcpListener, metrics: Arc<M>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, &*metrics));
                    if let Ok(Err(error)) = answer.await {
                        tracing::debug!(%error, "metrics request failed");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint cannot accept connections");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head (up to 8 KiB) and writes the response.
async fn answer<M: Exposition>(mut stream: TcpStream, metrics: &M) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, content_type, body) = route(&head, metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn route<M: Exposition>(head: &[u8], metrics: &M) -> (&'static str, &'static str, String) {
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != b"GET" && method != b"HEAD" {
        return ("405 Method Not Allowed", TEXT, "GET only\n".to_owned());
    }
    match path {
        b"/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        b"/healthz" if metrics.healthy() => ("200 OK", TEXT, "ok\n".to_owned()),
        b"/healthz" => (
            "503 Service Unavailable",
            TEXT,
            "shutting down\n".to_owned(),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::new();
        metrics.lines.fetch_add(3, Ordering::Relaxed);
        metrics.bad_row(BadRowType::SizeViolation);
        let text = metrics.render();
        assert!(
            text.contains("plowline_processor_lines_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("plowline_processor_bad_rows_total{type=\"size_violation\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("plowline_processor_produce_errors_total 0\n"));
        assert!(text.contains("# TYPE plowline_processor_in_flight_messages gauge\n"));
    }

    #[tokio::test]
    async fn serves_metrics_and_healthz_over_http() {
        let metrics = Arc::new(Metrics::new());
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics)));
        let get = |path: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let response = get("/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("plowline_processor_events_total 0\n"));
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        metrics.healthy.store(false, Ordering::Relaxed);
        assert!(get("/healthz").await.starts_with("HTTP/1.1 503"));
        server.abort();
    }
}
