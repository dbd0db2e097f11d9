//! File identity: a hash of a file's first bytes, so that a file keeps its identity across
//! renames, copies and gzip compression, while device and inode alone (reused by the kernel) do not
//! decide it.
//!
//! A file shorter than the fingerprint size (`files.fingerprint_bytes`, 1 KiB by default) cannot
//! be told apart by its head yet: its identity is its device and inode together with the hash of
//! the bytes it has so far, and it is upgraded to a head hash once it has grown. Small files are
//! therefore shipped at once, and a file that starts empty is tracked from its first byte.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// 64 bits of SHA-256 over `bytes`, as 16 hex digits.
pub fn hash_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a file's first `head_len` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many head bytes the hash covers.
    pub head_len: u64,
    /// [`hash_hex`] of those bytes.
    pub head_hash: String,
}

impl Fingerprint {
    /// The fingerprint of a head read with [`read_head`].
    pub fn of(head: &[u8]) -> Self {
        Self {
            head_len: head.len() as u64,
            head_hash: hash_hex(head),
        }
    }

    /// Whether `head` (a file's first bytes, possibly more than `head_len`) starts with the bytes
    /// this fingerprint was taken from.
    pub fn matches(&self, head: &[u8]) -> bool {
        let Ok(len) = usize::try_from(self.head_len) else {
            return false;
        };
        head.len() >= len && hash_hex(&head[..len]) == self.head_hash
    }

    /// Whether the fingerprint covers the full `fingerprint_bytes` and so identifies the file
    /// by content alone.
    pub fn is_complete(&self, fingerprint_bytes: usize) -> bool {
        self.head_len >= fingerprint_bytes as u64
    }
}

/// A file's identity as stored in the registry and sent as `file` in the `plowline.source` header:
/// `fp:<hash>` for files of at least `fingerprint_bytes`, `ino:<dev>:<inode>` for smaller ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FileId(pub String);

impl FileId {
    /// The identity of a file whose head has fingerprint `fp`.
    pub fn new(fp: &Fingerprint, fingerprint_bytes: usize, dev: u64, ino: u64) -> Self {
        if fp.is_complete(fingerprint_bytes) {
            Self(format!("fp:{}", fp.head_hash))
        } else {
            Self(format!("ino:{dev}:{ino}"))
        }
    }

    /// Whether this identity is a content hash (as opposed to device and inode).
    pub fn is_content(&self) -> bool {
        self.0.starts_with("fp:")
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a path names a gzip-compressed file (read decompressed).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Reads up to `n` bytes from the start of an opened file, decompressing if `gzip`. A gzip file
/// that is still being written yields the bytes decoded so far.
pub fn read_head(file: &File, n: usize, gzip: bool) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    if gzip {
        let handle = file.try_clone()?;
        let mut plain = handle;
        io::Seek::seek(&mut plain, io::SeekFrom::Start(0))?;
        let mut decoder = flate2::read::MultiGzDecoder::new(plain);
        read_up_to(&mut decoder, &mut head, n)?;
    } else {
        use std::os::unix::fs::FileExt as _;
        head.resize(n, 0);
        let mut filled = 0;
        while filled < n {
            match file.read_at(&mut head[filled..], filled as u64) {
                Ok(0) => break,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        head.truncate(filled);
    }
    Ok(head)
}

fn read_up_to(reader: &mut impl Read, out: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        let want = (n - out.len()).min(chunk.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A gzip file still being written ends early: what was decoded is its head so far.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching() {
        let fp = Fingerprint::of(b"abc");
        assert!(fp.matches(b"abc"));
        assert!(fp.matches(b"abcdef"));
        assert!(!fp.matches(b"ab"));
        assert!(!fp.matches(b"abd"));
        assert!(Fingerprint::of(b"").matches(b"anything"));
    }

    #[test]
    fn identity_upgrades_with_size() {
        let small = Fingerprint::of(b"abc");
        assert_eq!(FileId::new(&small, 4, 1, 2).0, "ino:1:2");
        let full = Fingerprint::of(b"abcd");
        assert!(FileId::new(&full, 4, 1, 2).is_content());
    }

    #[test]
    fn gzip_head_is_the_decompressed_head() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&path).unwrap(), Default::default());
        enc.write_all(b"hello world\n").unwrap();
        enc.finish().unwrap();
        let head = read_head(&File::open(&path).unwrap(), 5, true).unwrap();
        assert_eq!(head, b"hello");
    }
}
