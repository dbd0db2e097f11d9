//! The line parser: a compiled format applied to one line gives a [`Record`] of borrowed fields.
//!
//! A line of a format `head $v1 tail1 $v2 tail2 … $vn tailn` is read element by element, each
//! element with its own small function below; values are located with `memchr`/`memmem`, so the
//! hot path neither allocates (up to [`INLINE_FIELDS`] variables) nor validates UTF-8.

use std::borrow::Cow;
use std::fmt;

use memchr::{memchr, memchr2};
use thiserror::Error;

use super::escape::{self, InvalidEscape};
use super::{Escape, Literal, LogFormat, Search};

/// Formats with up to this many variables are parsed without allocating.
const INLINE_FIELDS: usize = 16;

/// How many bytes of the line an error quotes.
const SNIPPET_LEN: usize = 32;

/// Why a line does not parse (or, from [`Record::hit`], does not make a hit).
///
/// Every variant that concerns the line says where: the variable (`field`, without `$`) and the
/// byte offset in the line, after which comes what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line does not have the shape of the format: a literal is not where it should be, or
    /// bytes follow the end of the format.
    #[error("{} at byte {offset}: expected {expected}, found {found}", Place(.field.as_deref()))]
    Syntax {
        /// The variable whose value was being read, if any (`None` before the first one).
        field: Option<Box<str>>,
        /// Where the value (or the unexpected bytes) starts.
        offset: usize,
        /// What the format wants there.
        expected: Expected,
        /// What the line has instead.
        found: Snippet,
    },
    /// A value holds an escape sequence that nginx would not have written.
    #[error("field ${field} at byte {offset}: invalid escape {sequence}: {expected}")]
    Escape {
        /// The variable whose value holds the sequence.
        field: Box<str>,
        /// Offset of the backslash in the line.
        offset: usize,
        /// The offending sequence.
        sequence: Snippet,
        /// What a valid sequence looks like.
        expected: &'static str,
    },
    /// A value that [`Record::hit`] needs is absent or malformed.
    #[error("field ${field} at byte {offset}: expected {expected}, found {found}")]
    Value {
        /// The variable.
        field: Box<str>,
        /// Offset of its value in the line.
        offset: usize,
        /// What the value should look like.
        expected: &'static str,
        /// The raw value (as in the line).
        found: Snippet,
    },
    /// The format has no variable from which [`Record::hit`] could take a required part.
    #[error("the log format has no {what}: it needs {needs}")]
    FormatLacks {
        /// The missing part, e.g. `collector timestamp`.
        what: &'static str,
        /// The variables that would provide it.
        needs: &'static str,
    },
}

impl ParseError {
    /// The byte offset in the line that the error is about, if it is about a place in the line.
    pub fn offset(&self) -> Option<usize> {
        match self {
            ParseError::Syntax { offset, .. }
            | ParseError::Escape { offset, .. }
            | ParseError::Value { offset, .. } => Some(*offset),
            ParseError::FormatLacks { .. } => None,
        }
    }

    /// The variable (without `$`) that the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Syntax { field, .. } => field.as_deref(),
            ParseError::Escape { field, .. } | ParseError::Value { field, .. } => Some(field),
            ParseError::FormatLacks { .. } => None,
        }
    }
}

/// `field $name`, or `line` for an error before the first variable.
struct Place<'e>(Option<&'e str>);

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, "field ${name}"),
            None => f.write_str("line"),
        }
    }
}

/// What a [`ParseError::Syntax`] expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// This literal text of the format.
    Literal(Box<str>),
    /// The end of the line.
    EndOfLine,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Literal(text) => write!(f, "{}", Quoted(text.as_bytes())),
            Expected::EndOfLine => f.write_str("end of line"),
        }
    }
}

/// A few bytes quoted from a line in an error. Displayed in double quotes with Rust-style escapes
/// (`"\t"`, `"\\x4G"`, `"\xff"` for a byte that is not UTF-8), with `…` when cut; or
/// `end of line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    bytes: Box<[u8]>,
    cut: bool,
    end_of_line: bool,
}

impl Snippet {
    /// Quotes a value (possibly empty).
    fn new(bytes: &[u8]) -> Snippet {
        let cut = bytes.len() > SNIPPET_LEN;
        let bytes = bytes[..bytes.len().min(SNIPPET_LEN)].into();
        Snippet {
            bytes,
            cut,
            end_of_line: false,
        }
    }

    /// Quotes the rest of a line: `end of line` when there is none.
    fn rest_of_line(rest: &[u8]) -> Snippet {
        Snippet {
            end_of_line: rest.is_empty(),
            ..Snippet::new(rest)
        }
    }

    fn end_of_line() -> Snippet {
        Snippet::rest_of_line(&[])
    }

    /// The quoted bytes (at most 32 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for Snippet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.end_of_line {
            return f.write_str("end of line");
        }
        write!(f, "{}", Quoted(&self.bytes))?;
        if self.cut {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// Bytes in double quotes with Rust-style escapes; bytes that are not UTF-8 as `\xHH`.
pub(crate) struct Quoted<'b>(pub &'b [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\t' => f.write_str("\\t")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

/// The fields of a record: inline for small formats, on the heap for large ones.
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "inline on purpose: parsing a line must not allocate"
)]
enum Fields<'a> {
    Inline {
        len: usize,
        items: [&'a [u8]; INLINE_FIELDS],
    },
    Heap(Vec<&'a [u8]>),
}

impl<'a> Fields<'a> {
    fn with_capacity(n: usize) -> Fields<'a> {
        if n <= INLINE_FIELDS {
            Fields::Inline {
                len: 0,
                items: [&[]; INLINE_FIELDS],
            }
        } else {
            Fields::Heap(Vec::with_capacity(n))
        }
    }

    fn push(&mut self, field: &'a [u8]) {
        match self {
            Fields::Inline { len, items } if *len < INLINE_FIELDS => {
                items[*len] = field;
                *len += 1;
            }
            Fields::Inline { len, items } => {
                let mut heap = items[..*len].to_vec();
                heap.push(field);
                *self = Fields::Heap(heap);
            }
            Fields::Heap(items) => items.push(field),
        }
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        match self {
            Fields::Inline { len, items } => &items[..*len],
            Fields::Heap(items) => items,
        }
    }
}

/// One parsed log line: the raw value of every variable of the format, borrowed from the line.
///
/// Values are kept as nginx wrote them ([`raw`](Self::raw)); the accessors [`get`](Self::get) and
/// [`var`](Self::var) unescape them, without allocating when a value has no escape sequence, and
/// give `None` for a variable that nginx wrote as not set (`-` with `escape=default`, the empty
/// string with `escape=json` and `escape=none`). Escape sequences were checked by [`LogFormat::parse`], so accessors do not fail.
#[derive(Clone)]
pub struct Record<'a> {
    line: &'a [u8],
    fields: Fields<'a>,
    /// Bit `i` set: field `i` holds an escape sequence (only kept for the first 64 fields).
    escaped: u64,
    format: LogFormat,
}

impl<'a> Record<'a> {
    /// The format this record was parsed with.
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// The line, without its line ending.
    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    /// The number of fields: one per variable of the format.
    pub fn len(&self) -> usize {
        self.fields.as_slice().len()
    }

    /// Whether the format has no variables at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of the variable at `index`, as written in the line (still escaped).
    pub fn raw(&self, index: usize) -> Option<&'a [u8]> {
        self.fields.as_slice().get(index).copied()
    }

    /// The value of a variable (by name, with or without `$`), as written in the line.
    pub fn raw_var(&self, var: &str) -> Option<&'a [u8]> {
        self.raw(self.format.index_of(var)?)
    }

    /// The byte offset in the line at which the value of the variable at `index` starts.
    pub fn offset(&self, index: usize) -> Option<usize> {
        let raw = self.raw(index)?;
        Some(raw.as_ptr() as usize - self.line.as_ptr() as usize)
    }

    /// Whether nginx wrote the variable at `index` as not set.
    pub fn is_absent(&self, index: usize) -> bool {
        self.raw(index)
            .is_none_or(|raw| raw == self.format.escape().absent())
    }

    /// The unescaped value of the variable at `index`; `None` when it is not set (or there is no
    /// such index).
    pub fn get(&self, index: usize) -> Option<Cow<'a, [u8]>> {
        let raw = self.raw(index)?;
        let escape = self.format.escape();
        if raw == escape.absent() {
            return None;
        }
        let has_escape = match index {
            0..64 => self.escaped & (1 << index) != 0,
            _ => true,
        };
        Some(if has_escape {
            escape::unescape(raw, escape)
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// The unescaped value of a variable (by name, with or without `$`); `None` when the format
    /// has no such variable or it is not set.
    pub fn var(&self, var: &str) -> Option<Cow<'a, [u8]>> {
        self.get(self.format.index_of(var)?)
    }

    /// Every variable with its unescaped value, in the format's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<Cow<'a, [u8]>>)> + '_ {
        self.format
            .variables()
            .enumerate()
            .map(|(i, name)| (name, self.get(i)))
    }

    /// A [`ParseError::Value`] about the variable at `index`.
    pub(super) fn value_error(&self, index: usize, expected: &'static str) -> ParseError {
        ParseError::Value {
            field: self.format.0.vars[index].name.clone(),
            offset: self.offset(index).unwrap_or_default(),
            expected,
            found: Snippet::new(self.raw(index).unwrap_or_default()),
        }
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (i, name) in self.format.variables().enumerate() {
            map.entry(
                &name,
                &format_args!("{}", Quoted(self.raw(i).unwrap_or_default())),
            );
        }
        map.finish()
    }
}

/// Parses `line` with `format`; see [`LogFormat::parse`].
pub(super) fn parse<'a>(format: &LogFormat, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
    let layout = &*format.0;
    let escape = layout.escape;
    let line = strip_line_end(line);
    let mut pos = head(line, &layout.head).ok_or_else(|| ParseError::Syntax {
        field: None,
        offset: 0,
        expected: Expected::Literal(layout.head.as_str().into()),
        found: Snippet::rest_of_line(line),
    })?;
    let mut fields = Fields::with_capacity(layout.vars.len());
    // The fields known, from the search for their end, to hold no backslash: no escape to check.
    let mut plain = 0u64;
    for (i, var) in layout.vars.iter().enumerate() {
        let (value, next, no_backslash) =
            value(line, pos, &var.tail, escape).ok_or_else(|| ParseError::Syntax {
                field: Some(var.name.clone()),
                offset: pos,
                expected: Expected::Literal(var.tail.as_str().into()),
                found: Snippet::end_of_line(),
            })?;
        fields.push(value);
        if no_backslash {
            plain |= 1u64.checked_shl(i as u32).unwrap_or(0);
        }
        pos = next;
    }
    if pos < line.len() {
        return Err(ParseError::Syntax {
            field: layout.vars.last().map(|v| v.name.clone()),
            offset: pos,
            expected: Expected::EndOfLine,
            found: Snippet::rest_of_line(&line[pos..]),
        });
    }
    let mut escaped = 0;
    for (i, field) in fields.as_slice().iter().enumerate() {
        if i < 64 && plain & (1 << i) != 0 {
            continue;
        }
        match escape::validate(field, escape) {
            Ok(false) => {}
            Ok(true) => escaped |= 1u64.checked_shl(i as u32).unwrap_or(0),
            Err(InvalidEscape { at, len, expected }) => {
                return Err(ParseError::Escape {
                    field: layout.vars[i].name.clone(),
                    offset: field.as_ptr() as usize - line.as_ptr() as usize + at,
                    sequence: Snippet::new(&field[at..at + len]),
                    expected,
                })
            }
        }
    }
    Ok(Record {
        line,
        fields,
        escaped,
        format: format.clone(),
    })
}

/// `line = content [ "\r" ] "\n"` → `content`; a line without its ending is taken whole.
fn strip_line_end(line: &[u8]) -> &[u8] {
    match line {
        [content @ .., b'\r', b'\n'] | [content @ .., b'\n'] => content,
        _ => line,
    }
}

/// `head = <the format's leading literal>`, at the start of the line; returns where the first
/// value starts.
fn head(line: &[u8], literal: &Literal) -> Option<usize> {
    line.starts_with(&literal.bytes)
        .then_some(literal.bytes.len())
}

/// `value tail`, where `value` is the shortest run of bytes from `start` that is followed by the
/// literal `tail` outside an escape sequence; for the last variable with no literal after it,
/// `value = *OCTET` (the rest of the line). Returns the value, where the next element starts and
/// whether the value is known to hold no backslash.
fn value<'a>(
    line: &'a [u8],
    start: usize,
    tail: &Literal,
    escape: Escape,
) -> Option<(&'a [u8], usize, bool)> {
    let rest = &line[start..];
    let (len, no_backslash) = match &tail.search {
        Search::Byte(b) => find_byte(rest, *b)?,
        _ => (find_literal(rest, tail, escape)?, false),
    };
    Some((&rest[..len], start + len + tail.bytes.len(), no_backslash))
}

/// The offset of the first `b` in `hay`, and whether no backslash comes before it. One search
/// for both: most values have no escape at all, and then checking them needs no search of its own.
fn find_byte(hay: &[u8], b: u8) -> Option<(usize, bool)> {
    let at = memchr2(b, b'\\', hay)?;
    if hay[at] == b {
        return Some((at, true));
    }
    let end = at + 1 + memchr(b, &hay[at + 1..])?;
    Some((end, false))
}

/// The offset of the first occurrence of `literal` in `hay` that does not begin inside an escape
/// sequence; the end of `hay` for the empty literal.
fn find_literal(hay: &[u8], literal: &Literal, escape: Escape) -> Option<usize> {
    match &literal.search {
        Search::Empty => Some(hay.len()),
        Search::Byte(b) => memchr(*b, hay),
        Search::Substring(finder) => finder.find(hay),
        Search::SkipEscapes => {
            let first = *literal.bytes.first()?;
            let mut pos = 0;
            loop {
                let at = pos + memchr2(first, b'\\', &hay[pos..])?;
                if hay[at..].starts_with(&literal.bytes) {
                    return Some(at);
                }
                pos = match hay[at] {
                    b'\\' => at + escape::skip_len(hay, at, escape),
                    _ => at + 1,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined_line() -> &'static [u8] {
        b"127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /i?e=pv&ua=\\x22x\\x22 HTTP/1.1\" 200 43 \"-\" \"Mozilla/5.0 \\x5C\"\n"
    }

    #[test]
    fn parses_combined_fields() {
        let format = LogFormat::combined();
        let record = format.parse(combined_line()).unwrap();
        assert_eq!(record.len(), 8);
        assert_eq!(record.var("remote_user"), None);
        assert_eq!(
            record.var("$request").unwrap(),
            &b"GET /i?e=pv&ua=\"x\" HTTP/1.1"[..]
        );
        assert_eq!(record.raw_var("http_referer"), Some(&b"-"[..]));
        assert!(record.is_absent(6));
        assert_eq!(
            record.var("http_user_agent").unwrap(),
            &b"Mozilla/5.0 \\"[..]
        );
        assert!(matches!(record.get(4), Some(Cow::Borrowed(b"200"))));
        assert_eq!(record.offset(2), Some(15));
    }

    #[test]
    fn errors_say_where() {
        let format = LogFormat::canonical();
        let err = format
            .parse(b"1700000000.123\t127.0.0.1\t-\thost\tGET\t/i?e=pv")
            .unwrap_err();
        expect_test::expect![[
            r#"field $request_uri at byte 36: expected "\t", found end of line"#
        ]]
        .assert_eq(&err.to_string());
        assert_eq!((err.field(), err.offset()), (Some("request_uri"), Some(36)));
        let err = LogFormat::combined().parse(b"GET / HTTP/1.1").unwrap_err();
        expect_test::expect![[
            r#"field $remote_addr at byte 0: expected " - ", found end of line"#
        ]]
        .assert_eq(&err.to_string());
        let format = LogFormat::compile("[$time_local] \"$request\"", Escape::Default).unwrap();
        let err = format.parse(b"x[a] \"b\"").unwrap_err();
        expect_test::expect![[r#"line at byte 0: expected "[", found "x[a] \"b\"""#]]
            .assert_eq(&err.to_string());
        let err = format
            .parse(b"[a] \"b\" and \xff more text, longer than the snippet")
            .unwrap_err();
        expect_test::expect![[r#"field $request at byte 7: expected end of line, found " and \xff more text, longer than th"…"#]]
            .assert_eq(&err.to_string());
        let err = format.parse(br#"[a] "b\x2""#).unwrap_err();
        expect_test::expect![[
            r#"field $request at byte 6: invalid escape "\\x2": expected \xHH with two hex digits"#
        ]]
        .assert_eq(&err.to_string());
    }

    #[test]
    fn json_values_may_hold_escaped_quotes() {
        let format =
            LogFormat::compile(r#"{"ua":"$http_user_agent","n":$status}"#, Escape::Json).unwrap();
        let record = format.parse(br#"{"ua":"a\",\"n\":1}\\","n":200}"#).unwrap();
        assert_eq!(
            record.var("http_user_agent").unwrap(),
            &br#"a","n":1}\"#[..]
        );
        assert_eq!(record.var("status").unwrap(), &b"200"[..]);
        let record = format.parse(br#"{"ua":"","n":}"#).unwrap();
        assert_eq!(
            (record.var("http_user_agent"), record.var("status")),
            (None, None)
        );
    }

    #[test]
    fn default_values_may_look_like_the_literal_inside_escapes() {
        // `x2` in `${a}x2$b` also occurs inside `\x22`.
        let format = LogFormat::compile("${a}x2$b", Escape::Default).unwrap();
        let record = format.parse(br"q\x22rx2s").unwrap();
        assert_eq!(record.var("a").unwrap(), &b"q\"r"[..]);
        assert_eq!(record.var("b").unwrap(), &b"s"[..]);
    }

    #[test]
    fn many_fields_spill_to_the_heap() {
        let source: Vec<String> = (0..70).map(|i| format!("$v{i}")).collect();
        let format = LogFormat::compile(&source.join(" "), Escape::Default).unwrap();
        let line: Vec<String> = (0..70).map(|i| format!("\\x41{i}")).collect();
        let line = line.join(" ");
        let record = format.parse(line.as_bytes()).unwrap();
        assert_eq!(record.len(), 70);
        assert_eq!(record.var("v69").unwrap(), &b"A69"[..]);
        assert_eq!(record.var("v3").unwrap(), &b"A3"[..]);
    }

    #[test]
    fn line_endings_are_not_part_of_the_line() {
        assert_eq!(strip_line_end(b"a\r\n"), b"a");
        assert_eq!(strip_line_end(b"a\n"), b"a");
        assert_eq!(strip_line_end(b"a\r"), b"a\r");
        assert_eq!(strip_line_end(b"\n\n"), b"\n");
    }
}
