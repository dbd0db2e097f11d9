//! Reading complete lines from a plain or gzip file, with the byte offset of each.
//!
//! Offsets count bytes of the (decompressed) content. A line is returned only once its `\n` has
//! been read, so a line that nginx is still writing waits for its end. A line longer than
//! `max_line_bytes` is returned cut to that length with its real length, without ever holding
//! more than `max_line_bytes` of it in memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use flate2::read::MultiGzDecoder;

const READ_CHUNK_BYTES: usize = 64 * 1024;

enum Source {
    Plain(File),
    /// Boxed: the decoder state is large, the plain variant a file handle.
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match self {
            Source::Plain(f) => f.read(buf),
            Source::Gzip(d) => d.read(buf),
        };
        match result {
            // A gzip file still being written: what is there is all there is for now.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

/// One line: its bytes without the `\n`, where it starts and where the next one starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's bytes, without the `\n`, cut to `max_line_bytes`.
    pub bytes: &'a [u8],
    /// Offset of the line's first byte.
    pub start: u64,
    /// Offset just past the line's `\n`.
    pub end: u64,
    /// The real length of a line that was cut.
    pub truncated_from: Option<u64>,
}

/// Reads lines from an open file from a given offset on.
pub struct LineReader {
    source: Option<Source>,
    gzip: bool,
    buf: Vec<u8>,
    /// Valid bytes are `buf[start..end]`; `buf[start]` is at file offset `pos`.
    start: usize,
    end: usize,
    pos: u64,
    max_line_bytes: usize,
    /// A line longer than `max_line_bytes` being skipped: its first bytes, start offset and
    /// length so far.
    long: Option<(Vec<u8>, u64, u64)>,
    /// Scratch space for the cut line handed out by `next_line`.
    emitted_long: Vec<u8>,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("gzip", &self.gzip)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl LineReader {
    /// A reader over `file` positioned at `offset` (of the decompressed content if `gzip`).
    pub fn open(file: File, gzip: bool, offset: u64, max_line_bytes: usize) -> io::Result<Self> {
        let mut reader = Self {
            source: Some(Source::Plain(file)),
            gzip,
            buf: vec![0; READ_CHUNK_BYTES.max(max_line_bytes + 1)],
            start: 0,
            end: 0,
            pos: 0,
            max_line_bytes,
            long: None,
            emitted_long: Vec::new(),
        };
        reader.seek(offset)?;
        Ok(reader)
    }

    /// Offset of the next byte not yet returned in a line.
    pub fn offset(&self) -> u64 {
        match &self.long {
            Some((_, start, _)) => *start,
            None => self.pos,
        }
    }

    /// The open file (for `fstat` and the registry's tail hash).
    pub fn file(&self) -> Option<&File> {
        match self.source.as_ref()? {
            Source::Plain(f) => Some(f),
            Source::Gzip(d) => Some(d.get_ref()),
        }
    }

    /// Repositions at `offset`, dropping buffered bytes (used to re-send from the last
    /// acknowledged offset).
    pub fn seek(&mut self, offset: u64) -> io::Result<()> {
        let file = match self.source.take() {
            Some(Source::Plain(f)) => f,
            Some(Source::Gzip(d)) => d.into_inner(),
            None => return Err(io::Error::other("reader lost its file")),
        };
        self.start = 0;
        self.end = 0;
        self.long = None;
        if self.gzip {
            let mut file = file;
            file.seek(SeekFrom::Start(0))?;
            let mut decoder = MultiGzDecoder::new(file);
            let skipped = io::copy(&mut (&mut decoder).take(offset), &mut io::sink())?;
            self.pos = skipped;
            self.source = Some(Source::Gzip(Box::new(decoder)));
        } else {
            let mut file = file;
            file.seek(SeekFrom::Start(offset))?;
            self.pos = offset;
            self.source = Some(Source::Plain(file));
        }
        Ok(())
    }

    /// Repositions at `offset` at or before the read position, such as the start of the line
    /// just returned that could not be queued: without I/O when those bytes are still buffered,
    /// else through [`LineReader::seek`].
    pub fn rewind(&mut self, offset: u64) -> io::Result<()> {
        match self.pos.checked_sub(offset) {
            Some(back) if self.long.is_none() && back <= self.start as u64 => {
                // `buf[..start]` holds the bytes just before `pos`: returned lines.
                self.start -= back as usize;
                self.pos = offset;
                Ok(())
            }
            _ => self.seek(offset),
        }
    }

    /// The next complete line, or `None` when no complete line is available yet (end of file, or
    /// a line still being written).
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                let line_pos = self.pos;
                let len = i + 1;
                self.start += len;
                self.pos += len as u64;
                if let Some((prefix, long_start, long_len)) = self.long.take() {
                    let total = long_len + i as u64;
                    self.emitted_long = prefix;
                    return Ok(Some(Line {
                        bytes: &self.emitted_long,
                        start: long_start,
                        end: self.pos,
                        truncated_from: Some(total),
                    }));
                }
                if i > self.max_line_bytes {
                    return Ok(Some(Line {
                        bytes: &self.buf[line_start..line_start + self.max_line_bytes],
                        start: line_pos,
                        end: self.pos,
                        truncated_from: Some(i as u64),
                    }));
                }
                return Ok(Some(Line {
                    bytes: &self.buf[line_start..line_start + i],
                    start: line_pos,
                    end: self.pos,
                    truncated_from: None,
                }));
            }
            let pending = self.end - self.start;
            if pending > self.max_line_bytes || self.long.is_some() {
                // Too long to keep: remember its head, drop the rest as it is read.
                let (prefix, _, len) = self.long.get_or_insert_with(|| (Vec::new(), self.pos, 0));
                let room = self.max_line_bytes.saturating_sub(prefix.len());
                let take = room.min(pending);
                prefix.extend_from_slice(&self.buf[self.start..self.start + take]);
                *len += pending as u64;
                self.pos += pending as u64;
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let source = self
                .source
                .as_mut()
                .ok_or_else(|| io::Error::other("reader lost its file"))?;
            let n = loop {
                match source.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// Bytes after the last complete line (a last line without `\n`), returned as a line so that
    /// a closed file loses nothing; `None` if there are none.
    pub fn take_partial(&mut self) -> Option<Line<'_>> {
        if let Some((prefix, start, len)) = self.long.take() {
            let total = len + (self.end - self.start) as u64;
            self.pos += (self.end - self.start) as u64;
            self.start = self.end;
            self.emitted_long = prefix;
            return Some(Line {
                bytes: &self.emitted_long,
                start,
                end: self.pos,
                truncated_from: Some(total),
            });
        }
        if self.end == self.start {
            return None;
        }
        let line_start = self.start;
        let line_pos = self.pos;
        let len = self.end - self.start;
        self.pos += len as u64;
        self.start = self.end;
        let shown = len.min(self.max_line_bytes);
        Some(Line {
            bytes: &self.buf[line_start..line_start + shown],
            start: line_pos,
            end: self.pos,
            truncated_from: (len > self.max_line_bytes).then_some(len as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn lines(reader: &mut LineReader) -> Vec<(String, u64, u64, Option<u64>)> {
        let mut out = Vec::new();
        while let Some(l) = reader.next_line().unwrap() {
            out.push((
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.start,
                l.end,
                l.truncated_from,
            ));
        }
        out
    }

    #[test]
    fn lines_with_offsets_and_a_waiting_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let mut r = LineReader::open(File::open(&path).unwrap(), false, 0, 100).unwrap();
        assert_eq!(
            lines(&mut r),
            vec![("one".into(), 0, 4, None), ("two".into(), 4, 8, None)]
        );
        assert_eq!(r.offset(), 8);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"ee\n").unwrap();
        assert_eq!(lines(&mut r), vec![("three".into(), 8, 14, None)]);
        r.seek(4).unwrap();
        assert_eq!(lines(&mut r).len(), 2);
    }

    #[test]
    fn rewinding_returns_the_same_lines_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let long = "x".repeat(100);
        std::fs::write(&path, format!("one\ntwo\n{long}\nfour\n")).unwrap();
        let mut r = LineReader::open(File::open(&path).unwrap(), false, 0, 16).unwrap();
        let all = lines(&mut r);
        assert_eq!(all.len(), 4);
        r.seek(0).unwrap();
        // Each line rewound once (from the buffer, or by a seek after the cut line) comes back.
        let mut again = Vec::new();
        for _ in 0..4 {
            let start = r.next_line().unwrap().unwrap().start;
            r.rewind(start).unwrap();
            let l = r.next_line().unwrap().unwrap();
            again.push((
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.start,
                l.end,
                l.truncated_from,
            ));
        }
        assert_eq!(again, all);
        assert_eq!(r.next_line().unwrap(), None);
        r.rewind(4).unwrap();
        assert_eq!(lines(&mut r), all[1..]);
    }

    #[test]
    fn long_lines_are_cut_and_the_file_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let long = "x".repeat(200_000);
        std::fs::write(&path, format!("a\n{long}\nb\n")).unwrap();
        let mut r = LineReader::open(File::open(&path).unwrap(), false, 0, 16).unwrap();
        let got = lines(&mut r);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, "x".repeat(16));
        assert_eq!((got[1].1, got[1].2, got[1].3), (2, 200_003, Some(200_000)));
        assert_eq!(got[2], ("b".into(), 200_003, 200_005, None));
    }

    #[test]
    fn gzip_files_are_read_decompressed_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&path).unwrap(), Default::default());
        enc.write_all(b"one\ntwo\n").unwrap();
        enc.finish().unwrap();
        let mut r = LineReader::open(File::open(&path).unwrap(), true, 4, 100).unwrap();
        assert_eq!(lines(&mut r), vec![("two".into(), 4, 8, None)]);
    }
}
