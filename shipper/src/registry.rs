//! The registry: for each file identity, how far its lines have been acknowledged by Kafka.
//!
//! Stored as `registry.json` in the registry directory, in a versioned JSON format:
//!
//! ```json
//! {"version": 1, "written_unix_ms": 1700000000000, "files": [
//!   {"id": "fp:0123456789abcdef", "path": "/var/log/nginx/tracker.log", "dev": 2049,
//!    "ino": 1234, "gzip": false, "offset": 52344,
//!    "fingerprint": {"head_len": 1024, "head_hash": "..."},
//!    "tail": {"len": 64, "hash": "..."}, "seen_unix_ms": 1700000000000}
//! ]}
//! ```
//!
//! `offset` only ever holds a position whose every earlier line Kafka has acknowledged (see
//! [`InFlight`]). `tail` hashes the bytes just before `offset`, so that a file rewritten in place
//! is not resumed in the middle of other data. Writes go to a temporary file, are fsynced, renamed
//! over the registry and the directory is fsynced: a crash leaves the old or the new registry,
//! never a mix.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{FileId, Fingerprint};

/// The registry format version written by this build.
pub const REGISTRY_VERSION: u32 = 1;

/// What the operator can do about an unreadable registry; part of the error message.
pub const RECOVERY: &str = "to recover, move the file aside (it is kept for inspection) or run \
`plow-shipper run --reset-registry`, which does that for you; the shipper then starts as on its \
first start: files present are read according to `read_from` (`beginning` ships them again \
whole, so downstream sees duplicates; `end` ships only new lines, so lines written while the \
shipper was down are skipped)";

/// Why the registry cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry exists but cannot be read.
    #[error("cannot read the registry {path}: {source}; {RECOVERY}")]
    Read {
        /// The registry file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The registry is not valid JSON of a known version.
    #[error("the registry {path} is corrupt ({reason}); {RECOVERY}")]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the registry failed (the previous one stays in place).
    #[error("cannot write the registry {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// A hash of the bytes just before an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// How many bytes the hash covers (up to 64).
    pub len: u64,
    /// `fingerprint::hash_hex` of those bytes.
    pub hash: String,
}

/// One file's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The file's identity.
    pub id: FileId,
    /// Where the file was last seen.
    pub path: PathBuf,
    /// Device of the file when last seen.
    pub dev: u64,
    /// Inode of the file when last seen.
    pub ino: u64,
    /// Whether the content is gzip-compressed (offsets count decompressed bytes).
    pub gzip: bool,
    /// Every line before this offset has been acknowledged by Kafka.
    pub offset: u64,
    /// The head of the file.
    pub fingerprint: Fingerprint,
    /// The bytes just before `offset`, if any.
    pub tail: Option<Tail>,
    /// When the file was last seen by a scan, Unix milliseconds.
    pub seen_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    written_unix_ms: u64,
    files: Vec<Entry>,
}

/// The registry in memory.
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<FileId, Entry>,
}

impl Registry {
    /// Loads the registry at `path`; `Ok(None)` when there is none (first start).
    pub fn load(path: &Path) -> Result<Option<Self>, RegistryError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| RegistryError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let version: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        match version.get("version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(REGISTRY_VERSION) => {}
            Some(v) => {
                return Err(corrupt(format!(
                    "format version {v}, this build reads version {REGISTRY_VERSION}"
                )))
            }
            None => return Err(corrupt("no format version".into())),
        }
        let disk: OnDisk =
            serde_json::from_value(version).map_err(|e| corrupt(format!("bad content: {e}")))?;
        Ok(Some(Self {
            entries: disk.files.into_iter().map(|e| (e.id.clone(), e)).collect(),
        }))
    }

    /// Writes the registry to `path`: temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path, now_unix_ms: u64) -> Result<(), RegistryError> {
        let tmp = path.with_extension("json.tmp");
        let write_err = |p: &Path| {
            let p = p.to_owned();
            move |source| RegistryError::Write { path: p, source }
        };
        let disk = OnDisk {
            version: REGISTRY_VERSION,
            written_unix_ms: now_unix_ms,
            files: self.entries.values().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&disk).map_err(|e| RegistryError::Write {
            path: path.to_owned(),
            source: io::Error::other(e),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(write_err(dir))?;
        let mut file = File::create(&tmp).map_err(write_err(&tmp))?;
        file.write_all(&json).map_err(write_err(&tmp))?;
        file.sync_all().map_err(write_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(write_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err(dir))?;
        Ok(())
    }

    /// The entry of an identity.
    pub fn get(&self, id: &FileId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// The entry of an identity, to update.
    pub fn get_mut(&mut self, id: &FileId) -> Option<&mut Entry> {
        self.entries.get_mut(id)
    }

    /// Inserts or replaces an entry.
    pub fn upsert(&mut self, entry: Entry) {
        self.entries.insert(entry.id.clone(), entry);
    }

    /// Removes an entry (a small file's identity, once upgraded to a content hash).
    pub fn remove(&mut self, id: &FileId) -> Option<Entry> {
        self.entries.remove(id)
    }

    /// The entry that a file with this head, device and inode continues, if any: a content
    /// identity matches on the head alone (renamed, copied or compressed files); a small file's
    /// identity also needs the same device and inode.
    pub fn find(
        &self,
        head: &[u8],
        fingerprint_bytes: usize,
        dev: u64,
        ino: u64,
    ) -> Option<&Entry> {
        if head.len() >= fingerprint_bytes {
            let fp = Fingerprint::of(&head[..fingerprint_bytes]);
            if let Some(e) = self
                .entries
                .get(&FileId::new(&fp, fingerprint_bytes, dev, ino))
            {
                return Some(e);
            }
        }
        self.entries
            .get(&FileId(format!("ino:{dev}:{ino}")))
            .filter(|e| e.fingerprint.matches(head))
    }

    /// Drops entries not seen since `cutoff_unix_ms`.
    pub fn forget_older_than(&mut self, cutoff_unix_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.seen_unix_ms >= cutoff_unix_ms);
        before - self.entries.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Moves an existing registry aside (`registry.json.reset-<unix_ms>`) and returns where it went.
pub fn reset(path: &Path, now_unix_ms: u64) -> io::Result<Option<PathBuf>> {
    if !path.exists() {
        return Ok(None);
    }
    let aside = path.with_extension(format!("json.reset-{now_unix_ms}"));
    fs::rename(path, &aside)?;
    Ok(Some(aside))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Pending,
    Acked,
    Failed,
}

/// The messages of one file that were produced and not yet settled, in file order; turns
/// delivery reports, which may come in any order across partitions, into the highest offset
/// below which every line is acknowledged.
#[derive(Debug)]
pub struct InFlight {
    first_seq: u64,
    /// (end offset, state) of messages `first_seq..`.
    queue: VecDeque<(u64, Delivery)>,
    acked_offset: u64,
    pending: usize,
    failed: bool,
}

/// What a delivery report settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Lines that became part of the acknowledged prefix.
    pub lines: u64,
    /// Bytes (with their `\n`) that became part of the acknowledged prefix.
    pub bytes: u64,
}

impl InFlight {
    /// Nothing in flight, everything before `acked_offset` acknowledged.
    pub fn new(acked_offset: u64) -> Self {
        Self {
            first_seq: 0,
            queue: VecDeque::new(),
            acked_offset,
            pending: 0,
            failed: false,
        }
    }

    /// The sequence number of the oldest message not yet settled into the acknowledged prefix
    /// (the next pushed one if none is).
    pub fn oldest_seq(&self) -> u64 {
        self.first_seq
    }

    /// The sequence number the next pushed message gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.queue.len() as u64
    }

    /// Records a produced line ending at `end`; returns its sequence number.
    pub fn push(&mut self, end: u64) -> u64 {
        self.queue.push_back((end, Delivery::Pending));
        self.pending += 1;
        self.first_seq + self.queue.len() as u64 - 1
    }

    /// Records the delivery report of message `seq`.
    pub fn report(&mut self, seq: u64, ok: bool) -> Settled {
        let Some(idx) = seq.checked_sub(self.first_seq) else {
            return Settled::default();
        };
        let Some(slot) = self.queue.get_mut(idx as usize) else {
            return Settled::default();
        };
        if slot.1 != Delivery::Pending {
            return Settled::default();
        }
        slot.1 = if ok {
            Delivery::Acked
        } else {
            Delivery::Failed
        };
        self.pending -= 1;
        if !ok {
            self.failed = true;
        }
        let mut settled = Settled::default();
        while let Some(&(end, Delivery::Acked)) = self.queue.front() {
            settled.lines += 1;
            settled.bytes += end - self.acked_offset;
            self.acked_offset = end;
            self.queue.pop_front();
            self.first_seq += 1;
        }
        settled
    }

    /// Every line before this offset is acknowledged.
    pub fn acked_offset(&self) -> u64 {
        self.acked_offset
    }

    /// Messages without a delivery report yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether a delivery failed since the last [`InFlight::restart`].
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// After a failure, once nothing is pending: forgets the unsettled messages (they will be
    /// produced again from [`InFlight::acked_offset`]).
    pub fn restart(&mut self) {
        self.first_seq += self.queue.len() as u64;
        self.queue.clear();
        self.failed = false;
    }

    /// Moves the acknowledged offset (a file read from a new position with nothing in flight).
    pub fn reset_to(&mut self, offset: u64) {
        self.restart();
        self.pending = 0;
        self.acked_offset = offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, offset: u64) -> Entry {
        Entry {
            id: FileId(id.into()),
            path: "/x/a.log".into(),
            dev: 1,
            ino: 2,
            gzip: false,
            offset,
            fingerprint: Fingerprint::of(b"head"),
            tail: None,
            seen_unix_ms: 5,
        }
    }

    #[test]
    fn acknowledged_offset_advances_only_over_a_contiguous_prefix() {
        let mut f = InFlight::new(0);
        let a = f.push(10);
        let b = f.push(20);
        let c = f.push(30);
        assert_eq!(f.report(b, true), Settled::default());
        assert_eq!(f.acked_offset(), 0);
        assert_eq!(
            f.report(a, true),
            Settled {
                lines: 2,
                bytes: 20
            }
        );
        assert_eq!(f.acked_offset(), 20);
        f.report(c, false);
        assert!(f.failed());
        assert_eq!(f.pending(), 0);
        f.restart();
        assert_eq!(f.acked_offset(), 20);
        let d = f.push(30);
        f.report(d, true);
        assert_eq!(f.acked_offset(), 30);
        // A late report of a forgotten message changes nothing.
        assert_eq!(f.report(c, true), Settled::default());
    }

    #[test]
    fn registry_round_trips_and_corruption_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        assert!(Registry::load(&path).unwrap().is_none());
        let mut r = Registry::default();
        r.upsert(entry("fp:00", 42));
        r.save(&path, 1).unwrap();
        let loaded = Registry::load(&path).unwrap().unwrap();
        assert_eq!(loaded.get(&FileId("fp:00".into())).unwrap().offset, 42);

        fs::write(&path, b"{\"version\": 1, \"files\": [tru").unwrap();
        let err = Registry::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("--reset-registry"), "{err}");
        fs::write(
            &path,
            b"{\"version\": 9, \"written_unix_ms\": 0, \"files\": []}",
        )
        .unwrap();
        assert!(Registry::load(&path)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let aside = reset(&path, 7).unwrap().unwrap();
        assert!(aside.exists());
        assert!(Registry::load(&path).unwrap().is_none());
    }
}
