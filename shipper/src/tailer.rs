//! The tailer: scans for files, reads lines, produces them and advances the registry as
//! delivery reports come back.
//!
//! One thread runs the loop; librdkafka's own threads deliver the reports through a channel.
//!
//! - Files are tracked while open by device and inode (the kernel cannot reuse an inode that is
//!   held open), and persisted by identity ([`FileId`]).
//! - A file that disappears from the globs (renamed away, deleted) is read to its end and closed
//!   once it stops growing; one that keeps growing is abandoned after `rotated_follow_max_secs`,
//!   logged with what was left unread.
//! - A file whose size drops below the read offset, or whose head changes, was truncated. If a
//!   copy of its old content is found by the globs (copytruncate's copy), reading moves to the
//!   copy at the same offset and nothing is lost; otherwise the lost range is logged and counted,
//!   and the new content is read from 0.
//! - Reading pauses while `max_in_flight_messages` are unacknowledged. A failed delivery stops
//!   the file; once its other messages have settled it is re-read from its acknowledged offset
//!   after a backoff that doubles with each failed round (`retry_backoff_ms` up to
//!   `retry_backoff_max_ms`). Until a delivery succeeds again, a failing file has at most
//!   [`PROBE_IN_FLIGHT`] messages in flight, so a broker that is still away costs a few re-sent
//!   lines, not a whole window of duplicates. Nothing is ever dropped on a timeout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{ReadFrom, ValidConfig};
use crate::discover::{self, Found};
use crate::fingerprint::{self, FileId, Fingerprint};
use crate::kafka::{
    self, KafkaClientError, Outgoing, Producer, Queued, Report, Token, TOKEN_FILE_MAX,
};
use crate::metrics::{now_unix_ms, Metrics};
use crate::reader::LineReader;
use crate::registry::{Entry, InFlight, Registry, RegistryError, Tail};
use crate::watch::{self, Wake, Watcher};

/// Bytes before the acknowledged offset whose hash is kept in the registry.
const TAIL_BYTES: u64 = 64;
/// Lines read from one file before the loop moves on to the next (fairness).
const LINES_PER_TURN: usize = 2_000;
/// A gzip file is read once it has not been modified for this long.
const GZIP_SETTLE: Duration = Duration::from_secs(2);
/// In-flight messages of a file whose last delivery round failed, until one succeeds.
pub const PROBE_IN_FLIGHT: usize = 100;
/// The longest the loop sleeps before it looks at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// After the window filled up and a delivery report came, how long the loop lets more reports
/// arrive before it produces again: a thread woken once per report and sending one line each time
/// costs more than the work itself.
const FULL_WAIT: Duration = Duration::from_millis(1);
/// How long a clean stop waits for in-flight messages.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(15);

/// Why the tailer stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TailerError {
    /// Loading or saving the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The Kafka producer could not be created or refused a message.
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
}

#[derive(Debug)]
struct Tracked {
    id: FileId,
    fp: Fingerprint,
    path: PathBuf,
    path_text: String,
    /// The `plowline.source` header prefix of its lines ([`kafka::source_prefix`]), kept in
    /// step with `path_text` and `id` by [`Tracked::refresh_source`].
    source: String,
    dev: u64,
    ino: u64,
    gzip: bool,
    max_line_bytes: usize,
    /// `None` once closed: the entry only waits for its last delivery reports.
    reader: Option<LineReader>,
    inflight: InFlight,
    retry_at: Option<Instant>,
    /// Delivery rounds that failed since the last successful delivery of this file.
    failed_rounds: u32,
    /// When the file stopped being matched by the globs.
    rotated_since: Option<Instant>,
    last_growth: Instant,
    at_eof: bool,
    /// Size at the previous scan (plain files), the known part of a truncation's loss.
    last_size: u64,
}

impl Tracked {
    fn refresh_source(&mut self, host: &str) {
        self.source = kafka::source_prefix(host, &self.path_text, &self.id.0);
    }

    fn entry(&self, now_unix_ms: u64) -> Entry {
        let offset = self.inflight.acked_offset();
        let tail = match (&self.reader, self.gzip) {
            (Some(r), false) => r.file().and_then(|f| tail_of(f, offset)),
            _ => None,
        };
        Entry {
            id: self.id.clone(),
            path: self.path.clone(),
            dev: self.dev,
            ino: self.ino,
            gzip: self.gzip,
            offset,
            fingerprint: self.fp.clone(),
            tail,
            seen_unix_ms: now_unix_ms,
        }
    }
}

/// The hash of the (up to) [`TAIL_BYTES`] bytes before `offset`.
fn tail_of(file: &File, offset: u64) -> Option<Tail> {
    let len = offset.min(TAIL_BYTES);
    if len == 0 {
        return None;
    }
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset - len).ok()?;
    Some(Tail {
        len,
        hash: fingerprint::hash_hex(&buf),
    })
}

/// What a read round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Nothing produced: no complete line, or every file waits.
    Idle,
    /// Lines produced; more may be ready.
    Produced,
    /// librdkafka's queue or `max_in_flight_messages` is full: wait for delivery reports.
    Full,
}

/// The tailer's state.
#[derive(Debug)]
pub struct Tailer {
    config: ValidConfig,
    registry: Registry,
    first_start: bool,
    first_scan_done: bool,
    files: BTreeMap<u64, Tracked>,
    next_key: u64,
    producer: Producer,
    reports_tx: Sender<Wake>,
    /// Delivery reports and file-system hints.
    reports: Receiver<Wake>,
    /// Keeps the inotify watches alive.
    watcher: Watcher,
    /// A file-system hint asked for a scan before the next periodic one.
    rescan_requested: bool,
    metrics: Arc<Metrics>,
    host: String,
    registry_dirty: bool,
    replace_producer: bool,
}

/// The host name sent as `host` in the `plowline.source` header.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Tailer {
    /// Loads the registry and creates the producer. No file is touched yet.
    pub fn new(config: ValidConfig, metrics: Arc<Metrics>) -> Result<Self, TailerError> {
        let loaded = Registry::load(&config.registry_file)?;
        let first_start = loaded.is_none();
        let registry = loaded.unwrap_or_default();
        tracing::info!(
            registry = %config.registry_file.display(),
            files = registry.len(),
            first_start,
            "registry loaded"
        );
        let (reports_tx, reports) = mpsc::channel();
        let producer = Producer::new(&config.kafka, reports_tx.clone())?;
        let patterns = config
            .inputs
            .iter()
            .flat_map(|i| i.include.iter().map(|p| p.as_str()));
        let watcher = watch::watch(patterns, reports_tx.clone());
        Ok(Self {
            config,
            registry,
            first_start,
            first_scan_done: false,
            files: BTreeMap::new(),
            next_key: 0,
            producer,
            reports_tx,
            reports,
            watcher,
            rescan_requested: false,
            metrics,
            host: host_name(),
            registry_dirty: first_start,
            replace_producer: false,
        })
    }

    /// Runs until `stop` is set, then flushes the producer and persists the registry.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), TailerError> {
        let scan_interval = Duration::from_millis(self.config.files.scan_interval_ms);
        // The stop flag is checked at least this often, whatever the poll interval.
        let poll = Duration::from_millis(self.config.files.poll_interval_ms).min(STOP_CHECK);
        let coalesce = Duration::from_millis(self.config.files.coalesce_ms);
        let mut next_scan = Instant::now();
        let mut last_flush = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_scan || std::mem::take(&mut self.rescan_requested) {
                self.scan(now);
                next_scan = now + scan_interval;
            }
            self.drain_reports();
            self.settle_failures(now)?;
            self.close_finished(now);
            self.watcher.rearm();
            let round = self.read_round(now)?;
            if self.registry_dirty && last_flush.elapsed() >= self.config.registry_flush_interval {
                self.flush_registry()?;
                last_flush = Instant::now();
            }
            if round != Round::Produced {
                match self.reports.recv_timeout(poll) {
                    Ok(wake) => {
                        let new_data = matches!(wake, Wake::Files { rescan: false });
                        self.handle_wake(wake);
                        if round == Round::Full {
                            std::thread::sleep(FULL_WAIT);
                        } else if new_data {
                            // Let the lines written meanwhile gather, to read them in one go.
                            std::thread::sleep(coalesce.saturating_sub(now.elapsed()));
                        }
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
                }
            }
        }
        tracing::info!("stopping: reading stopped, flushing the producer");
        if !self.producer.flush(SHUTDOWN_FLUSH) {
            tracing::warn!(
                in_flight = self.in_flight(),
                "not every message was acknowledged before the stop; they will be shipped again \
                 from the registry at the next start"
            );
        }
        self.drain_reports();
        self.flush_registry()?;
        tracing::info!("stopped cleanly");
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.files.values().map(|t| t.inflight.pending()).sum()
    }

    fn drain_reports(&mut self) {
        while let Ok(wake) = self.reports.try_recv() {
            self.handle_wake(wake);
        }
    }

    fn handle_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Delivery(report) => self.handle_report(report),
            Wake::Files { rescan } => self.rescan_requested |= rescan,
        }
    }

    fn handle_report(&mut self, report: Report) {
        let Some(t) = self.files.get_mut(&report.token.file) else {
            return;
        };
        let ok = report.result.is_ok();
        if ok {
            t.failed_rounds = 0;
        }
        if let Err(error) = &report.result {
            self.metrics.delivery_errors.fetch_add(1, Ordering::Relaxed);
            self.replace_producer = true;
            if !t.inflight.failed() {
                tracing::warn!(
                    path = %t.path.display(),
                    %error,
                    acked_offset = t.inflight.acked_offset(),
                    "delivery failed; the file will be shipped again from its acknowledged offset"
                );
            }
        }
        let seq = report.token.widen_seq(t.inflight.oldest_seq());
        let settled = t.inflight.report(seq, ok);
        if settled.lines > 0 {
            self.metrics
                .lines
                .fetch_add(settled.lines, Ordering::Relaxed);
            self.metrics
                .bytes
                .fetch_add(settled.bytes, Ordering::Relaxed);
            self.registry_dirty = true;
        }
    }

    /// Files whose delivery failed and whose messages have all settled: rewind to the
    /// acknowledged offset and retry after the backoff. Recreates the producer after a fatal
    /// librdkafka error once nothing is in flight.
    fn settle_failures(&mut self, now: Instant) -> Result<(), TailerError> {
        let kafka = &self.config.kafka;
        let mut gone = Vec::new();
        for (key, t) in &mut self.files {
            if !t.inflight.failed() || t.inflight.pending() > 0 {
                continue;
            }
            let offset = t.inflight.acked_offset();
            t.inflight.restart();
            match &mut t.reader {
                Some(reader) => {
                    if let Err(error) = reader.seek(offset) {
                        tracing::error!(path = %t.path.display(), %error, offset,
                            "cannot rewind the file to re-send; closing it");
                        t.reader = None;
                    }
                    t.failed_rounds = t.failed_rounds.saturating_add(1);
                    let backoff = retry_backoff(
                        kafka.retry_backoff_ms,
                        kafka.retry_backoff_max_ms,
                        t.failed_rounds,
                    );
                    t.retry_at = Some(now + backoff);
                    t.at_eof = false;
                }
                None => {
                    tracing::error!(path = %t.path.display(), offset,
                        "lines of a file that is already closed could not be delivered and are lost");
                    gone.push(*key);
                }
            }
        }
        for key in gone {
            self.files.remove(&key);
        }
        if self.replace_producer && self.in_flight() == 0 {
            // After a failed delivery the producer is replaced once nothing is in flight: an
            // idempotent producer whose messages timed out has a gap in its sequence numbers that
            // some brokers (Tansu 0.6) reject forever; a new producer starts a clean sequence.
            self.replace_producer = false;
            let fatal = self.producer.fatal_error();
            tracing::info!(
                fatal = fatal.as_deref().unwrap_or("none"),
                "replacing the Kafka producer after failed deliveries"
            );
            self.producer = Producer::new(&self.config.kafka, self.reports_tx.clone())?;
        }
        Ok(())
    }

    /// Reads and produces lines from every file that may be read.
    fn read_round(&mut self, now: Instant) -> Result<Round, TailerError> {
        if self.replace_producer {
            // Waiting for the producer to drain before it is replaced.
            return Ok(Round::Idle);
        }
        let max_in_flight = self.config.kafka.max_in_flight_messages;
        let mut in_flight = self.in_flight();
        let mut round = Round::Idle;
        for (&key, t) in &mut self.files {
            if t.inflight.failed() || t.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            t.retry_at = None;
            let Some(reader) = t.reader.as_mut() else {
                continue;
            };
            for _ in 0..LINES_PER_TURN {
                if in_flight >= max_in_flight {
                    return Ok(Round::Full);
                }
                if t.failed_rounds > 0 && t.inflight.pending() >= PROBE_IN_FLIGHT {
                    break;
                }
                let line = match reader.next_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => {
                        t.at_eof = true;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(path = %t.path.display(), %error, "read error; will retry");
                        break;
                    }
                };
                let (start, end, truncated_from) = (line.start, line.end, line.truncated_from);
                let queued = self.producer.send(&Outgoing {
                    value: line.bytes,
                    source: &t.source,
                    offset: start,
                    truncated_from,
                    token: Token {
                        file: key,
                        seq: t.inflight.next_seq(),
                    },
                })?;
                if queued == Queued::QueueFull {
                    if let Err(error) = reader.rewind(start) {
                        tracing::warn!(path = %t.path.display(), %error, "cannot re-read a line");
                    }
                    return Ok(Round::Full);
                }
                t.inflight.push(end);
                in_flight += 1;
                round = Round::Produced;
                t.at_eof = false;
                t.last_growth = now;
                if truncated_from.is_some() {
                    self.metrics.truncated_lines.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %t.path.display(), offset = start,
                        length = truncated_from, "line longer than max_line_bytes shipped cut");
                }
            }
        }
        Ok(round)
    }

    /// Closes renamed or deleted files that are read to their end and acknowledged, and those
    /// followed for longer than the limit while still growing; drops closed files with nothing
    /// left in flight.
    fn close_finished(&mut self, now: Instant) {
        let idle = Duration::from_millis(self.config.files.rotated_close_idle_ms);
        let follow_max = Duration::from_secs(self.config.files.rotated_follow_max_secs);
        let now_ms = now_unix_ms();
        let mut removed = Vec::new();
        for (&key, t) in &mut self.files {
            if let (Some(since), Some(reader)) = (t.rotated_since, t.reader.as_mut()) {
                let quiet = now.duration_since(t.last_growth.max(since)) >= idle;
                let settled = t.inflight.pending() == 0 && !t.inflight.failed();
                if t.at_eof && quiet && settled {
                    if let Some(line) = reader.take_partial() {
                        // A last line without `\n`: ship it before closing.
                        tracing::info!(path = %t.path.display(), offset = line.start,
                            "shipping a last line without newline of a closed file");
                        let (start, end) = (line.start, line.end);
                        match self.producer.send(&Outgoing {
                            value: line.bytes,
                            source: &t.source,
                            offset: start,
                            truncated_from: line.truncated_from,
                            token: Token {
                                file: key,
                                seq: t.inflight.next_seq(),
                            },
                        }) {
                            Ok(Queued::Yes) => {
                                t.inflight.push(end);
                            }
                            _ => {
                                let _ = reader.rewind(start);
                            }
                        }
                        continue;
                    }
                    tracing::info!(path = %t.path.display(), offset = t.inflight.acked_offset(),
                        "rotated file read to its end; closed");
                    self.registry.upsert(t.entry(now_ms));
                    t.reader = None;
                } else if now.duration_since(since) >= follow_max && !quiet {
                    let size = reader
                        .file()
                        .and_then(|f| f.metadata().ok())
                        .map(|m| m.len());
                    tracing::warn!(path = %t.path.display(), offset = reader.offset(), ?size,
                        "rotated file still growing after rotated_follow_max_secs; closed before its end");
                    self.metrics.abandoned_files.fetch_add(1, Ordering::Relaxed);
                    self.registry.upsert(t.entry(now_ms));
                    t.reader = None;
                }
                if t.reader.is_none() {
                    self.registry_dirty = true;
                }
            }
            if t.reader.is_none() && t.inflight.pending() == 0 && !t.inflight.failed() {
                removed.push(key);
            }
        }
        for key in removed {
            if let Some(t) = self.files.remove(&key) {
                // Reports that came after the close still move the entry forward.
                if let Some(entry) = self.registry.get_mut(&t.id) {
                    if entry.ino == t.ino && entry.offset < t.inflight.acked_offset() {
                        entry.offset = t.inflight.acked_offset();
                        entry.tail = None;
                        self.registry_dirty = true;
                    }
                }
            }
        }
        self.metrics.open_files.store(
            self.files.values().filter(|t| t.reader.is_some()).count() as u64,
            Ordering::Relaxed,
        );
    }

    /// Expands the globs and reconciles what is found with the open files.
    fn scan(&mut self, now: Instant) {
        let (found, errors) = discover::scan(&self.config.inputs);
        for error in errors {
            tracing::warn!(%error, "cannot read a matched path");
        }
        let n = self.config.files.fingerprint_bytes;
        let by_inode: HashMap<(u64, u64), u64> = self
            .files
            .iter()
            .filter(|(_, t)| t.reader.is_some())
            .map(|(&k, t)| ((t.dev, t.ino), k))
            .collect();
        let mut seen = HashSet::new();
        let mut truncated = Vec::new();
        let mut fresh = Vec::new();
        for f in found {
            if let Some(&key) = by_inode.get(&(f.dev, f.ino)) {
                seen.insert(key);
                let Some(t) = self.files.get_mut(&key) else {
                    continue;
                };
                if t.path != f.path {
                    tracing::info!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                    t.path_text = f.path.display().to_string();
                    t.path = f.path.clone();
                    t.refresh_source(&self.host);
                }
                if t.rotated_since.take().is_some() {
                    tracing::debug!(path = %t.path.display(), "file matched again");
                }
                if !t.gzip {
                    if let Some(lost) = check_truncation(t, &f, n, &mut self.registry, &self.host) {
                        truncated.push((key, f, lost));
                    }
                }
                continue;
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(error) => {
                    tracing::warn!(path = %f.path.display(), %error, "cannot open");
                    continue;
                }
            };
            let gzip = fingerprint::is_gzip(&f.path);
            match fingerprint::read_head(&file, n, gzip) {
                Ok(head) => fresh.push((f, file, head, gzip)),
                Err(error) => {
                    tracing::warn!(path = %f.path.display(), %error, "cannot read the head")
                }
            }
        }

        // New inodes whose head is that of an open file are copies of it (copytruncate's copy,
        // a compressed rotated file): a truncated file continues in its copy.
        let mut remaining = Vec::new();
        for (f, file, head, gzip) in fresh {
            let copy_of = self
                .files
                .iter()
                .filter(|(_, t)| t.reader.is_some() && t.fp.is_complete(n))
                .find(|(_, t)| t.fp.matches(&head))
                .map(|(&k, _)| k);
            let Some(key) = copy_of else {
                remaining.push((f, file, head, gzip));
                continue;
            };
            let Some(pos) = truncated.iter().position(|(k, _, _)| *k == key) else {
                tracing::debug!(path = %f.path.display(), "copy of an open file; not read");
                continue;
            };
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            let offset = t.reader.as_ref().map_or(0, LineReader::offset);
            match LineReader::open(file, gzip, offset, t.max_line_bytes) {
                Ok(reader) => {
                    let (_, original, _) = truncated.swap_remove(pos);
                    tracing::info!(truncated = %original.path.display(), copy = %f.path.display(),
                        offset, "file truncated after being copied; reading on in the copy");
                    t.reader = Some(reader);
                    t.dev = f.dev;
                    t.ino = f.ino;
                    t.gzip = gzip;
                    t.path_text = f.path.display().to_string();
                    t.path = f.path;
                    t.refresh_source(&self.host);
                    t.at_eof = false;
                    seen.insert(key);
                }
                Err(error) => {
                    tracing::warn!(path = %f.path.display(), %error, "cannot open the copy");
                }
            }
        }

        // Truncated without a copy: what was not read is lost; the new content starts at 0.
        for (key, f, lost) in truncated {
            self.metrics.truncations.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .lost_bytes
                .fetch_add(lost.1.saturating_sub(lost.0), Ordering::Relaxed);
            if lost.1 > lost.0 {
                tracing::error!(path = %f.path.display(), from = lost.0, to = lost.1,
                    "file truncated before it was read to its end: bytes in this range are lost");
            } else {
                tracing::info!(path = %f.path.display(), offset = lost.0,
                    "file truncated after it was read to its end; reading it again from 0");
            }
            if let Some(t) = self.files.get_mut(&key) {
                // The old content now only waits for its delivery reports.
                let reader = t.reader.take();
                let now_ms = now_unix_ms();
                self.registry.upsert(t.entry(now_ms));
                let Some(file) = reader.and_then(|r| r.file().and_then(|f| f.try_clone().ok()))
                else {
                    continue;
                };
                match fingerprint::read_head(&file, n, false) {
                    Ok(head) => remaining.push((f, file, head, false)),
                    Err(error) => tracing::warn!(path = %f.path.display(), %error, "cannot read"),
                }
                // This entry of the same inode must not be resumed.
                self.registry
                    .remove(&FileId(format!("ino:{}:{}", t.dev, t.ino)));
            }
        }

        for (f, file, head, gzip) in remaining {
            if let Some(key) = self.open(f, file, &head, gzip, now) {
                seen.insert(key);
            }
        }

        for (key, t) in &mut self.files {
            if t.reader.is_some() && t.rotated_since.is_none() && !seen.contains(key) {
                tracing::info!(path = %t.path.display(),
                    "file renamed away or deleted; reading it to its end");
                t.rotated_since = Some(now);
            }
        }
        self.first_scan_done = true;
        self.update_lag();
        let forget = self.config.registry_forget_after.as_millis() as u64;
        if self
            .registry
            .forget_older_than(now_unix_ms().saturating_sub(forget))
            > 0
        {
            self.registry_dirty = true;
        }
    }

    /// Starts tracking a file not open yet; returns its key, or `None` when it is skipped.
    fn open(&mut self, f: Found, file: File, head: &[u8], gzip: bool, now: Instant) -> Option<u64> {
        let n = self.config.files.fingerprint_bytes;
        if gzip {
            // A gzip file may still be being written (logrotate compresses in place): wait until
            // it has not changed for a moment.
            let settling = f.modified.is_none_or(|m| {
                SystemTime::now()
                    .duration_since(m)
                    .map_or(true, |age| age < GZIP_SETTLE)
            });
            if settling || head.is_empty() {
                return None;
            }
        }
        let input = &self.config.inputs[f.input];
        let offset = match self.registry.find(head, n, f.dev, f.ino) {
            Some(entry) => resume_offset(entry, &file, &f, gzip),
            None => {
                let old = match (input.ignore_older, f.modified) {
                    (Some(max), Some(modified)) => SystemTime::now()
                        .duration_since(modified)
                        .is_ok_and(|age| age > max),
                    _ => false,
                };
                if old {
                    tracing::debug!(path = %f.path.display(), "older than ignore_older_secs; skipped");
                    return None;
                }
                let at_end =
                    self.first_start && !self.first_scan_done && input.read_from == ReadFrom::End;
                match (at_end, gzip) {
                    (false, _) => 0,
                    (true, false) => f.size,
                    (true, true) => u64::MAX,
                }
            }
        };
        let max_line_bytes = input.max_line_bytes;
        let reader = match LineReader::open(file, gzip, offset, max_line_bytes) {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(path = %f.path.display(), %error, "cannot read");
                return None;
            }
        };
        let offset = reader.offset();
        let fp = Fingerprint::of(head);
        let id = FileId::new(&fp, n, f.dev, f.ino);
        tracing::info!(path = %f.path.display(), id = %id, offset, "tailing file");
        let key = self.new_key();
        let path_text = f.path.display().to_string();
        self.files.insert(
            key,
            Tracked {
                source: kafka::source_prefix(&self.host, &path_text, &id.0),
                id,
                fp,
                path_text,
                path: f.path,
                dev: f.dev,
                ino: f.ino,
                gzip,
                max_line_bytes,
                reader: Some(reader),
                inflight: InFlight::new(offset),
                retry_at: None,
                failed_rounds: 0,
                rotated_since: None,
                last_growth: now,
                at_eof: false,
                last_size: f.size,
            },
        );
        self.registry_dirty = true;
        Some(key)
    }

    /// A runtime key for a newly opened file: a counter that wraps at [`TOKEN_FILE_MAX`] (the
    /// widest key a delivery token carries), skipping keys still in use. A key is reused only
    /// after its file was dropped, which waits for every delivery report of that file.
    fn new_key(&mut self) -> u64 {
        loop {
            let key = self.next_key;
            self.next_key = if key >= TOKEN_FILE_MAX { 0 } else { key + 1 };
            if !self.files.contains_key(&key) {
                return key;
            }
        }
    }

    fn update_lag(&self) {
        let lag = self
            .files
            .values()
            .filter_map(|t| {
                let size = t.reader.as_ref()?.file()?.metadata().ok()?.len();
                let lag = if t.gzip {
                    0
                } else {
                    size.saturating_sub(t.inflight.acked_offset())
                };
                Some((t.path_text.clone(), lag))
            })
            .collect();
        if let Ok(mut slot) = self.metrics.lag.lock() {
            *slot = lag;
        }
    }

    /// Writes every open file's acknowledged offset to the registry file.
    pub fn flush_registry(&mut self) -> Result<(), TailerError> {
        let now_ms = now_unix_ms();
        for t in self.files.values().filter(|t| t.reader.is_some()) {
            self.registry.upsert(t.entry(now_ms));
        }
        self.registry.save(&self.config.registry_file, now_ms)?;
        self.metrics
            .registry_written_unix_ms
            .store(now_ms, Ordering::Relaxed);
        self.registry_dirty = false;
        Ok(())
    }
}

/// Where to resume a file that the registry knows.
fn resume_offset(entry: &Entry, file: &File, f: &Found, gzip: bool) -> u64 {
    if gzip {
        return entry.offset;
    }
    if f.size < entry.offset {
        tracing::warn!(path = %f.path.display(), offset = entry.offset, size = f.size,
            "file is shorter than its registry offset (truncated while the shipper was down); \
             reading it from 0");
        return 0;
    }
    if let Some(tail) = &entry.tail {
        if tail_of(file, entry.offset).as_ref() != Some(tail) {
            tracing::warn!(path = %f.path.display(), offset = entry.offset,
                "bytes before the registry offset changed (file rewritten); reading it from 0");
            return 0;
        }
    }
    entry.offset
}

/// Whether an open file was truncated or rewritten; returns (read offset, size last seen) as the
/// lost range. Upgrades a small file's identity once it has grown to the fingerprint size.
fn check_truncation(
    t: &mut Tracked,
    f: &Found,
    n: usize,
    registry: &mut Registry,
    host: &str,
) -> Option<(u64, u64)> {
    let reader = t.reader.as_ref()?;
    let read = reader.offset();
    let head = fingerprint::read_head(reader.file()?, n, false).ok()?;
    let rewritten = !t.fp.matches(&head);
    if f.size < read || rewritten {
        // What the file held at the previous scan beyond the read offset is certainly lost;
        // what was written after that scan and before the truncation cannot be known.
        return Some((read, t.last_size.max(read)));
    }
    t.last_size = f.size;
    if !t.fp.is_complete(n) && head.len() as u64 > t.fp.head_len {
        t.fp = Fingerprint::of(&head);
        let id = FileId::new(&t.fp, n, t.dev, t.ino);
        if id != t.id {
            tracing::debug!(path = %t.path.display(), from = %t.id, to = %id, "file identity upgraded");
            registry.remove(&t.id);
            t.id = id;
            t.refresh_source(host);
        }
    }
    None
}

/// The wait before re-sending a file after its `failed_rounds`-th failed delivery round in a
/// row: `base_ms` doubled each round, at most `max_ms`.
fn retry_backoff(base_ms: u64, max_ms: u64, failed_rounds: u32) -> Duration {
    let doublings = failed_rounds.saturating_sub(1).min(20);
    Duration::from_millis(
        base_ms
            .saturating_mul(1 << doublings)
            .min(max_ms.max(base_ms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_up_to_the_maximum() {
        let waits: Vec<u64> = (1..=7)
            .map(|round| retry_backoff(200, 5_000, round).as_millis() as u64)
            .collect();
        assert_eq!(waits, [200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(retry_backoff(200, 5_000, u32::MAX), Duration::from_secs(5));
        // A maximum below the base never shortens the base.
        assert_eq!(retry_backoff(1_000, 10, 3), Duration::from_secs(1));
    }
}
