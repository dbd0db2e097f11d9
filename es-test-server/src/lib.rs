//! An Elasticsearch stand-in for tests, since Elasticsearch itself cannot be installed where the
//! tests run. It reproduces the documented behaviour the loaders depend on:
//!
//! - `GET /` (cluster info, version 8.x); `PUT /_index_template/<name>` (stored; its mappings and
//!   settings apply to indices created later whose names match its `index_patterns`, the highest
//!   `priority` winning; unknown settings refused); `PUT /_ilm/policy/<name>`;
//! - `POST /_bulk` and `POST /<index>/_bulk`: NDJSON (`Content-Type` `application/x-ndjson` or
//!   `application/json`, else 406), optional `Content-Encoding: gzip`, the body must end with a
//!   newline (else 400 `illegal_argument_exception`); `index`, `create` and `delete` actions with
//!   `_index`/`_id`; per-item results with `status`, `result`, `_version`, `_seq_no`; `create` of
//!   an existing `_id` is 409 `version_conflict_engine_exception`; a document that does not fit
//!   the mapping is 400 `document_parsing_exception` naming the field (see [`mapping`]); a data
//!   stream (a template with `data_stream`) takes only `create` and needs `@timestamp`;
//! - `GET /<index>/_doc/<id>`, `GET /<index>/_count` (patterns with `*` and lists; documents
//!   are searchable after `_refresh`, `?refresh` on `_bulk`, or one second after the index's last
//!   write, as with the default `refresh_interval`), `POST /<index>/_refresh`,
//!   `GET /<index>/_mapping`;
//! - optional credentials (API key or basic): 401 `security_exception` without them.
//!
//! Faults are injected into `_bulk` requests only, one [`Fault`] per request: a script consumed
//! in order, then a default. [`Stats`] counts every outcome, and how many times (and first when) each
//! `_id` was indexed, so tests can assert "indexed exactly once" and measure latency.

pub mod cluster;
pub mod http;
pub mod mapping;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand::SeedableRng;

use crate::cluster::{Cluster, Reply};

/// What happens to one `_bulk` request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answered normally.
    Pass,
    /// The whole request answers this status (429 `es_rejected_execution_exception`, 503
    /// `unavailable_shards_exception`, 500 …) without indexing anything, with `Retry-After`
    /// when given.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, in seconds.
        retry_after_s: Option<u64>,
    },
    /// This fraction of the items (drawn at random) answer 429 `es_rejected_execution_exception`
    /// and are not indexed; the others are.
    RejectItems {
        /// Between 0 and 1.
        fraction: f64,
    },
    /// The response is sent after this delay (the request is processed after it too).
    Delay {
        /// How long, in milliseconds.
        ms: u64,
    },
    /// The connection is closed without an answer, before anything is indexed.
    Reset,
    /// The request is processed (documents indexed), then the connection is closed without an
    /// answer: the client cannot know it succeeded.
    ResetAfter,
}

impl FromStr for Fault {
    type Err = String;

    /// `pass`, `429`, `503/2` (status with `Retry-After: 2`), `items-429:0.5`, `delay:500`,
    /// `reset`, `reset-after`.
    fn from_str(text: &str) -> Result<Fault, String> {
        let bad = || {
            format!("unknown fault [{text}]: expected pass, STATUS[/RETRY_AFTER_S], items-429:FRACTION, delay:MS, reset or reset-after")
        };
        Ok(match text {
            "pass" | "ok" => Fault::Pass,
            "reset" => Fault::Reset,
            "reset-after" => Fault::ResetAfter,
            _ => {
                if let Some(fraction) = text.strip_prefix("items-429:") {
                    let fraction: f64 = fraction.parse().map_err(|_| bad())?;
                    if !(0.0..=1.0).contains(&fraction) {
                        return Err(bad());
                    }
                    Fault::RejectItems { fraction }
                } else if let Some(ms) = text.strip_prefix("delay:") {
                    Fault::Delay {
                        ms: ms.parse().map_err(|_| bad())?,
                    }
                } else {
                    let (status, retry) = match text.split_once('/') {
                        Some((s, r)) => (s, Some(r.parse().map_err(|_| bad())?)),
                        None => (text, None),
                    };
                    let status: u16 = status.parse().map_err(|_| bad())?;
                    if !(400..=599).contains(&status) {
                        return Err(bad());
                    }
                    Fault::Status {
                        status,
                        retry_after_s: retry,
                    }
                }
            }
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Pass => write!(f, "pass"),
            Fault::Status {
                status,
                retry_after_s: None,
            } => write!(f, "{status}"),
            Fault::Status {
                status,
                retry_after_s: Some(r),
            } => write!(f, "{status}/{r}"),
            Fault::RejectItems { fraction } => write!(f, "items-429:{fraction}"),
            Fault::Delay { ms } => write!(f, "delay:{ms}"),
            Fault::Reset => write!(f, "reset"),
            Fault::ResetAfter => write!(f, "reset-after"),
        }
    }
}

/// Counts of what the server did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests read.
    pub requests: u64,
    /// `_bulk` requests processed (not counting those failed by a status or reset fault).
    pub bulk_requests: u64,
    /// `_bulk` requests with a gzip body.
    pub gzip_requests: u64,
    /// Items that created a document (201).
    pub items_created: u64,
    /// Items that replaced a document (200).
    pub items_updated: u64,
    /// `create` items refused because the `_id` exists (409).
    pub items_conflicts: u64,
    /// Items refused with 429 by a fault.
    pub items_rejected_429: u64,
    /// Items refused with 400 (mapping errors, invalid index names …).
    pub items_failed_400: u64,
    /// Whole requests answered with a fault status.
    pub faulted_status: u64,
    /// Connections closed by a reset fault.
    pub faulted_resets: u64,
    /// Responses delayed by a fault.
    pub faulted_delays: u64,
    /// How many times each `_id` was indexed (created or replaced).
    pub indexed: HashMap<String, u64>,
    /// When each `_id` was first indexed, in milliseconds since the Unix epoch (wall clock, for
    /// latency measurements; searchable up to a refresh interval later).
    pub first_indexed_ms: HashMap<String, u64>,
}

/// How to start a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Require `Authorization: ApiKey <api_key>` (or the basic credentials).
    pub api_key: Option<String>,
    /// Require `Authorization: Basic base64(user:password)` — give the base64 text.
    pub basic_auth_base64: Option<String>,
    /// Seed of the random draws (item rejections, generated ids).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: None,
            basic_auth_base64: None,
            seed: 7,
        }
    }
}

struct Shared {
    cluster: Mutex<Cluster>,
    stop: AtomicBool,
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
}

/// A running test server; stopped when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TestServer {
    /// Listens and serves in background threads.
    pub fn start(options: Options) -> io::Result<TestServer> {
        let listener = TcpListener::bind(options.listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cluster: Mutex::new(Cluster::new(
                rand::rngs::StdRng::seed_from_u64(options.seed),
                options.api_key,
                options.basic_auth_base64,
            )),
            stop: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("es-test-accept".into())
            .spawn(move || accept_loop(listener, accepting))?;
        Ok(TestServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.shared
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Appends faults for the next `_bulk` requests, one each, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.cluster().script.extend(faults);
    }

    /// The fault of `_bulk` requests once the script is used up (initially [`Fault::Pass`]).
    pub fn set_default_fault(&self, fault: Fault) {
        self.cluster().default_fault = fault;
    }

    /// Faults of the script not yet used.
    pub fn pending_faults(&self) -> usize {
        self.cluster().script.len()
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        self.cluster().stats.clone()
    }

    /// When each `_id` was first indexed (milliseconds since the Unix epoch), without copying the
    /// other counters.
    pub fn first_indexed_ms(&self) -> HashMap<String, u64> {
        self.cluster().stats.first_indexed_ms.clone()
    }

    /// How many times the document `id` was indexed successfully.
    pub fn times_indexed(&self, id: &str) -> u64 {
        self.cluster().stats.indexed.get(id).copied().unwrap_or(0)
    }

    /// Documents stored in the indices matching `target` (`tracker-events-*`), refreshed or not.
    pub fn count(&self, target: &str) -> usize {
        self.cluster().count(target)
    }

    /// The `_source` of a document.
    pub fn document(&self, index: &str, id: &str) -> Option<serde_json::Value> {
        self.cluster().document(index, id)
    }

    /// The mapped type of `path` (dotted) in `index`.
    pub fn field_type(&self, index: &str, path: &str) -> Option<String> {
        self.cluster().field_type(index, path)
    }

    /// An index template as stored.
    pub fn template(&self, name: &str) -> Option<serde_json::Value> {
        self.cluster().template(name)
    }

    /// An ILM policy's `policy` object.
    pub fn ilm_policy(&self, name: &str) -> Option<serde_json::Value> {
        self.cluster().policy(name)
    }

    /// The names of the indices and data streams.
    pub fn index_names(&self) -> Vec<String> {
        self.cluster().index_names()
    }

    /// Serves until the process ends (for the binary).
    pub fn wait(mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, then end the open connections.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(
            &mut *self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for stream in connections.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, clone);
        }
        let serving = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("es-test-conn".into())
            .spawn(move || {
                serve_connection(stream, &serving);
                serving
                    .connections
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        if spawned.is_err() {
            shared
                .connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let mut request = match http::read_request(&mut stream, &mut buf) {
            Ok(Some(request)) => request,
            Ok(None) | Err(http::ReadError::Io(_)) => return,
            Err(http::ReadError::Bad(status, reason)) => {
                let _ = cluster::error(status, "illegal_argument_exception", &reason)
                    .write_to(&mut stream, false);
                return;
            }
        };
        let head_only = request.method == "HEAD";
        let reply = match cluster::decode_body(&mut request) {
            Ok(()) => handle(&request, shared),
            Err(response) => Reply::Send(response),
        };
        match reply {
            Reply::Send(response) => {
                if response.write_to(&mut stream, head_only).is_err() {
                    return;
                }
            }
            Reply::Reset => {
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

fn handle(request: &http::Request, shared: &Shared) -> Reply {
    let lock = || shared.cluster.lock().unwrap_or_else(|e| e.into_inner());
    let fault = {
        let mut cluster = lock();
        cluster.stats.requests += 1;
        if let Some(denied) = cluster.check_auth(request) {
            return Reply::Send(denied);
        }
        if let Some(response) = cluster.route(request) {
            return Reply::Send(response);
        }
        cluster.next_fault()
    };
    let mut reject_fraction = 0.0;
    match fault {
        Fault::Pass | Fault::ResetAfter => {}
        Fault::Status {
            status,
            retry_after_s,
        } => {
            lock().stats.faulted_status += 1;
            let (kind, reason) = match status {
                429 => ("es_rejected_execution_exception", "rejected execution of coordinating operation [coordinating_and_primary_bytes=107374182, replica_bytes=0, all_bytes=107374182, coordinating_operation_bytes=4096, max_coordinating_and_primary_bytes=107374182]"),
                503 => ("unavailable_shards_exception", "[tracker-events][0] primary shard is not active Timeout: [1m]"),
                _ => ("exception", "injected server error"),
            };
            let mut response = cluster::error(status, kind, reason);
            if let Some(seconds) = retry_after_s {
                response.headers.push(("retry-after", seconds.to_string()));
            }
            return Reply::Send(response);
        }
        Fault::RejectItems { fraction } => reject_fraction = fraction,
        Fault::Delay { ms } => {
            lock().stats.faulted_delays += 1;
            thread::sleep(Duration::from_millis(ms));
        }
        Fault::Reset => {
            lock().stats.faulted_resets += 1;
            return Reply::Reset;
        }
    }
    let mut cluster = lock();
    let response = cluster.bulk(request, reject_fraction);
    if fault == Fault::ResetAfter {
        cluster.stats.faulted_resets += 1;
        return Reply::Reset;
    }
    Reply::Send(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_print_back() {
        for text in [
            "pass",
            "429/2",
            "503",
            "items-429:0.5",
            "delay:300",
            "reset",
            "reset-after",
        ] {
            let fault: Fault = text.parse().unwrap();
            assert_eq!(fault.to_string(), text);
        }
        for bad in ["200", "items-429:2", "delay:x", "boom"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
