//! nginx's access-log escaping, in both directions.
//!
//! What nginx 1.22 writes was checked against the real server (a throwaway `nginx -p DIR` on
//! loopback, hit with raw requests carrying `"`, `\`, TAB, 0x01, 0x1F, 0x7F, UTF-8 and lone 0xE9/0xFF
//! bytes in the URI, User-Agent, Referer and a proxied POST body):
//!
//! - `escape=default` (`ngx_http_log_escape`): `"` → `\x22`, `\` → `\x5C`, TAB → `\x09`, bytes
//!   0x00–0x1F, 0x7F and 0x80–0xFF → `\xHH` with uppercase hex; everything else raw. A variable that
//!   is not found (no Referer header, `$uid_got` without a cookie, `$request_body` of a GET) is
//!   written as `-`; a header sent empty is written as the empty string; a header sent as `-` is
//!   also `-`, so `-` always reads back as absent.
//! - `escape=json` (`ngx_escape_json`): `"` → `\"`, `\` → `\\`, `\n \r \t \b \f` short forms, other
//!   bytes ≤ 0x1F → `\u00XX` (uppercase, e.g. `\u001F`); 0x7F and bytes ≥ 0x80 are written raw. A
//!   variable that is not found is written as the empty string.
//! - `escape=none`: bytes are written raw (TAB included); not found → the empty string (nginx's
//!   `ngx_http_log_unescaped_variable`), unlike `escape=default`.
//! - For a request nginx rejects with 400, `$request_method` and `$request_uri` are not found (`-`)
//!   while `$host` is found and empty.
//!
//! The same session checked the other direction: `nginx -t` accepts what
//! [`LogFormat::nginx_directive`](super::LogFormat::nginx_directive) renders for the canonical and
//! `combined` formats, an `escape=json` format with `'`, `\` and `${host}x` in it, and an
//! `escape=none` format (in a single-quoted nginx string `\t` is a TAB and `\'`, `\\` are the
//! characters); every line nginx then wrote parsed, and `write_line` given the parsed values wrote
//! each line back byte for byte.

use std::borrow::Cow;

use memchr::memchr;

use super::Escape;
use crate::swar;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `ESCAPED_DEFAULT[b]`: nginx's `escape=default` writes byte `b` as `\xHH`.
const ESCAPED_DEFAULT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x7f;
        b += 1;
    }
    table
};

/// Appends `value` to `out` escaped as nginx's `escape=default` does (`ngx_http_log_escape`):
/// `"`, `\`, bytes 0x00–0x1F, 0x7F and 0x80–0xFF become `\xHH` with uppercase hex digits.
pub fn escape_default(value: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if ESCAPED_DEFAULT[usize::from(b)] {
            out.extend_from_slice(&value[start..i]);
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&value[start..]);
}

/// Appends `value` to `out` escaped as nginx's `escape=json` does (`ngx_escape_json`): `"` and `\`
/// get a backslash, `\n \r \t \b \f` their short forms, other bytes up to 0x1F become `\u00XX`
/// (uppercase hex); 0x7F and bytes from 0x80 are copied raw.
pub fn escape_json(value: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in value.iter().enumerate() {
        if b > 0x1f && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&value[start..i]);
        start = i + 1;
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&value[start..]);
}

/// An escape sequence that nginx would never have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidEscape {
    /// Offset of the backslash within the field.
    pub at: usize,
    /// Length of the offending sequence, clipped to the field.
    pub len: usize,
    /// What a valid sequence looks like.
    pub expected: &'static str,
}

/// One decoded escape sequence: the bytes it stands for and how long it was.
struct Unescaped {
    len: usize,
    bytes: [u8; 4],
    count: usize,
}

impl Unescaped {
    fn byte(len: usize, b: u8) -> Self {
        Unescaped {
            len,
            bytes: [b, 0, 0, 0],
            count: 1,
        }
    }

    fn char(len: usize, c: char) -> Self {
        let mut bytes = [0; 4];
        let count = c.encode_utf8(&mut bytes).len();
        Unescaped { len, bytes, count }
    }
}

/// `default-escape = "\x" HEXDIG HEXDIG` at `field[at]` (a backslash). Lowercase hex digits are
/// accepted although nginx writes uppercase.
fn default_escape_at(field: &[u8], at: usize) -> Result<Unescaped, InvalidEscape> {
    match default_byte(field, at) {
        Some(b) => Ok(Unescaped::byte(4, b)),
        None => Err(InvalidEscape {
            at,
            len: default_prefix_len(field, at) + 1,
            expected: r"expected \xHH with two hex digits",
        }
        .clip(field)),
    }
}

/// The byte a well-formed `\xHH` at `field[at]` stands for: the common case of both walks
/// below, decoded without building an [`Unescaped`].
fn default_byte(field: &[u8], at: usize) -> Option<u8> {
    match field.get(at + 1..at + 4)? {
        &[b'x', high, low] => crate::hex::pair(high, low),
        _ => None,
    }
}

/// The length of the longest prefix of `\xHH` at `field[at]`.
fn default_prefix_len(field: &[u8], at: usize) -> usize {
    if field.get(at + 1) != Some(&b'x') {
        return 1;
    }
    2 + hex_run(field, at + 2, 2)
}

/// How many hex digits (at most `max`) follow `field[from]`.
fn hex_run(field: &[u8], from: usize, max: usize) -> usize {
    field
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_hexdigit())
        .count()
}

/// `hex4 = 4HEXDIG` after a `\u` whose backslash is at `field[at]`.
fn json_hex4(field: &[u8], at: usize) -> Option<u16> {
    let digits = field.get(at + 2..at + 6)?;
    digits.iter().try_fold(0u16, |acc, &d| {
        Some(acc << 4 | u16::from(crate::hex::digit(d)?))
    })
}

/// `json-escape = "\" ( %x22 / "\" / "/" / "b" / "f" / "n" / "r" / "t" / "u" hex4 )` at
/// `field[at]` (a backslash), where a `\u` high surrogate must be followed by a `\u` low
/// surrogate; the pair decodes to one UTF-8 character.
fn json_escape_at(field: &[u8], at: usize) -> Result<Unescaped, InvalidEscape> {
    const EXPECTED: &str = r#"expected one of \" \\ \/ \b \f \n \r \t \uXXXX"#;
    const HEX4: &str = r"expected four hex digits after \u";
    let simple = |b| Ok(Unescaped::byte(2, b));
    match field.get(at + 1) {
        Some(b'"') => simple(b'"'),
        Some(b'\\') => simple(b'\\'),
        Some(b'/') => simple(b'/'),
        Some(b'b') => simple(0x08),
        Some(b'f') => simple(0x0c),
        Some(b'n') => simple(b'\n'),
        Some(b'r') => simple(b'\r'),
        Some(b't') => simple(b'\t'),
        Some(b'u') => {
            let unit = json_hex4(field, at)
                .ok_or_else(|| invalid(field, at, 3 + hex_run(field, at + 2, 4), HEX4))?;
            match unit {
                0xd800..=0xdbff => {
                    let low = match field.get(at + 6..at + 8) {
                        Some(b"\\u") => json_hex4(field, at + 6),
                        _ => None,
                    };
                    match low {
                        Some(low @ 0xdc00..=0xdfff) => {
                            let c = 0x10000
                                + ((u32::from(unit) - 0xd800) << 10)
                                + (u32::from(low) - 0xdc00);
                            let c =
                                char::from_u32(c).ok_or_else(|| invalid(field, at, 12, HEX4))?;
                            Ok(Unescaped::char(12, c))
                        }
                        _ => Err(invalid(
                            field,
                            at,
                            12,
                            r"expected a low surrogate \uDC00-\uDFFF after a high surrogate",
                        )),
                    }
                }
                0xdc00..=0xdfff => Err(invalid(
                    field,
                    at,
                    6,
                    r"a low surrogate must follow a high surrogate \uD800-\uDBFF",
                )),
                _ => match char::from_u32(u32::from(unit)) {
                    Some(c) => Ok(Unescaped::char(6, c)),
                    None => Err(invalid(field, at, 6, HEX4)),
                },
            }
        }
        _ => Err(invalid(field, at, 2, EXPECTED)),
    }
}

fn invalid(field: &[u8], at: usize, len: usize, expected: &'static str) -> InvalidEscape {
    InvalidEscape { at, len, expected }.clip(field)
}

impl InvalidEscape {
    /// Keeps the offending sequence within the field.
    fn clip(mut self, field: &[u8]) -> InvalidEscape {
        self.len = self.len.min(field.len() - self.at);
        self
    }
}

fn escape_at(field: &[u8], at: usize, escape: Escape) -> Result<Unescaped, InvalidEscape> {
    match escape {
        Escape::Default => default_escape_at(field, at),
        Escape::Json => json_escape_at(field, at),
        Escape::None => Ok(Unescaped::byte(1, b'\\')),
    }
}

/// The index of the next backslash in `field` at or after `from`, else the field's length. A
/// plain scan rather than a search call: in the fields that have escapes at all they come close
/// together (nginx writes every `"` of a JSON request body as `\x22`).
fn next_backslash(field: &[u8], from: usize) -> usize {
    field[from..]
        .iter()
        .position(|&b| b == b'\\')
        .map_or(field.len(), |i| from + i)
}

/// Checks every escape sequence in a raw field; `Ok(true)` when it has at least one.
pub(crate) fn validate(field: &[u8], escape: Escape) -> Result<bool, InvalidEscape> {
    if escape == Escape::None {
        return Ok(false);
    }
    let Some(at) = memchr(b'\\', field) else {
        return Ok(false);
    };
    if escape == Escape::Default && default_escapes_well_formed(&field[at..]) {
        return Ok(true);
    }
    check_each_escape(field, at, escape)?;
    Ok(true)
}

/// Checks the escape sequences of `field` one by one from the backslash at `field[at]`, and
/// says what is wrong with the first invalid one.
fn check_each_escape(field: &[u8], mut at: usize, escape: Escape) -> Result<(), InvalidEscape> {
    while at < field.len() {
        let len = match escape {
            Escape::Default if default_byte(field, at).is_some() => 4,
            _ => escape_at(field, at, escape)?.len,
        };
        at = next_backslash(field, at + len);
    }
    Ok(())
}

/// Whether every backslash of `field` starts a well-formed `\xHH` (the `escape=default` grammar).
///
/// Every byte is checked against the three after it with the same branch-free test, so the
/// compiler checks many positions per instruction: a field with escapes at all is dense with
/// them (a tp2 body has a `\x22` every few bytes), where stopping at each one costs more than
/// looking at every byte. Only says yes or no; [`validate`] then finds the offending sequence.
fn default_escapes_well_formed(field: &[u8]) -> bool {
    let is_hex = |d: u8| (d.wrapping_sub(b'0') < 10) | ((d | 0x20).wrapping_sub(b'a') < 6);
    let after = |n: usize| field.get(n..).unwrap_or_default();
    let (body, tail) = field.split_at(field.len().saturating_sub(3));
    let windows = body.iter().zip(after(1)).zip(after(2)).zip(after(3));
    let broken = windows.fold(false, |broken, (((&b, &x), &high), &low)| {
        broken | ((b == b'\\') & !((x == b'x') & is_hex(high) & is_hex(low)))
    });
    !broken && !tail.contains(&b'\\')
}

/// Decodes a raw field: borrowed when it has no backslash.
///
/// An invalid sequence (which [`validate`] would have refused) is copied through as it is.
pub(crate) fn unescape(field: &[u8], escape: Escape) -> Cow<'_, [u8]> {
    if escape == Escape::None {
        return Cow::Borrowed(field);
    }
    let Some(mut at) = memchr(b'\\', field) else {
        return Cow::Borrowed(field);
    };
    if escape == Escape::Default {
        return Cow::Owned(unescape_default(field, at));
    }
    let mut out = Vec::with_capacity(field.len());
    out.extend_from_slice(&field[..at]);
    while at < field.len() {
        let pos = match (escape, default_byte(field, at)) {
            (Escape::Default, Some(b)) => {
                out.push(b);
                at + 4
            }
            _ => match escape_at(field, at, escape) {
                Ok(u) => {
                    out.extend_from_slice(&u.bytes[..u.count]);
                    at + u.len
                }
                Err(_) => {
                    out.push(b'\\');
                    at + 1
                }
            },
        };
        at = next_backslash(field, pos);
        out.extend_from_slice(&field[pos..at]);
    }
    Cow::Owned(out)
}

/// [`unescape`] for `escape=default`, from the first backslash at `field[at]`: one pass over the
/// bytes, into a buffer that never grows (a field with escapes at all is dense with them: nginx
/// writes every `"` of a JSON request body as `\x22`, and a JSON string inside it has runs of
/// escapes, `\x5C\x22`). At a backslash the escape is decoded at once; the text up to the next
/// one is copied eight bytes at a time: a word is stored whole and the write position advanced
/// only to its first backslash, which the next store overwrites.
fn unescape_default(field: &[u8], at: usize) -> Vec<u8> {
    let mut out = vec![0; field.len()];
    out[..at].copy_from_slice(&field[..at]);
    let (mut read, mut len) = (at, at);
    while let Some(&b) = field.get(read) {
        if b == b'\\' {
            let (byte, step) = default_byte(field, read).map_or((b'\\', 1), |decoded| (decoded, 4));
            out[len] = byte;
            (read, len) = (read + step, len + 1);
            continue;
        }
        match field
            .get(read..read + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            // `len` never passes `read`, so the eight bytes fit in `out` as they do in `field`;
            // the first byte is no backslash, so the run is at least one byte.
            Some(word) => {
                out[len..len + 8].copy_from_slice(&word);
                let run = swar::first(swar::equal(u64::from_le_bytes(word), b'\\'));
                (read, len) = (read + run, len + run);
            }
            None => {
                out[len] = b;
                (read, len) = (read + 1, len + 1);
            }
        }
    }
    out.truncate(len);
    out
}

/// How many bytes of the escape sequence starting at `field[at]` (a backslash) to step over while
/// looking for a literal: the well-formed part of it, so that a broken sequence does not hide the
/// literal after it (and is reported as what it is).
pub(crate) fn skip_len(field: &[u8], at: usize, escape: Escape) -> usize {
    match escape {
        Escape::Default => default_prefix_len(field, at),
        Escape::Json => match field.get(at + 1) {
            Some(b'u') => 2 + hex_run(field, at + 2, 4),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => 2,
            _ => 1,
        },
        Escape::None => 1,
    }
}

/// Can a literal starting with `first` begin inside an escape sequence of this mode (so that a
/// plain substring search could end a value too early)?
pub(crate) fn may_start_inside_escape(first: u8, escape: Escape) -> bool {
    match escape {
        Escape::Default => first == b'\\' || first == b'x' || first.is_ascii_hexdigit(),
        Escape::Json => {
            matches!(
                first,
                b'\\' | b'"' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
            ) || first.is_ascii_hexdigit()
        }
        Escape::None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(f: fn(&[u8], &mut Vec<u8>), v: &[u8]) -> String {
        let mut out = Vec::new();
        f(v, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn default_escapes_like_nginx() {
        assert_eq!(
            esc(escape_default, b"a\"b\\c\td\x01\x1f\x7f\xc3\xa9 ~"),
            r#"a\x22b\x5Cc\x09d\x01\x1F\x7F\xC3\xA9 ~"#
        );
        assert_eq!(esc(escape_default, b""), "");
    }

    #[test]
    fn json_escapes_like_nginx() {
        let mut out = Vec::new();
        escape_json(b"a\"b\\c\td\n\r\x08\x0c\x01\x1f\x7f\xc3\xa9/", &mut out);
        assert_eq!(
            out,
            b"a\\\"b\\\\c\\td\\n\\r\\b\\f\\u0001\\u001F\x7f\xc3\xa9/"
        );
    }

    #[test]
    fn unescapes_default() {
        assert_eq!(
            unescape(br"a\x22\x5c\xC3\xA9", Escape::Default),
            &b"a\"\\\xc3\xa9"[..]
        );
        assert!(matches!(
            unescape(b"plain", Escape::Default),
            Cow::Borrowed(_)
        ));
        assert_eq!(unescape(br"\x4", Escape::Default), &br"\x4"[..]);
    }

    #[test]
    fn unescapes_json() {
        let raw = br#"\"\\\/\b\f\n\r\t\u0001\u00e9\ud83d\ude00x"#;
        assert_eq!(validate(raw, Escape::Json), Ok(true));
        assert_eq!(
            unescape(raw, Escape::Json),
            &b"\"\\/\x08\x0c\n\r\t\x01\xc3\xa9\xf0\x9f\x98\x80x"[..]
        );
    }

    #[test]
    fn rejects_invalid_escapes() {
        let e = validate(br"ab\xZZ", Escape::Default).unwrap_err();
        assert_eq!((e.at, e.len), (2, 3));
        let e = validate(br"ab\x4", Escape::Default).unwrap_err();
        assert_eq!((e.at, e.len), (2, 3));
        let e = validate(br#"\"quote"#, Escape::Default).unwrap_err();
        assert_eq!((e.at, e.len), (0, 2));
        let e = validate(br#"x\u12"y"#, Escape::Json).unwrap_err();
        assert_eq!((e.at, e.len), (1, 5));
        assert!(validate(br"\", Escape::Default).is_err());
        assert!(validate(br"\q", Escape::Json).is_err());
        assert!(validate(br"\u12", Escape::Json).is_err());
        assert!(validate(br"\ud83d", Escape::Json).is_err());
        assert!(validate(br"\ud83d\u0041", Escape::Json).is_err());
        assert!(validate(br"\ude00", Escape::Json).is_err());
        assert_eq!(validate(br"a\b", Escape::None), Ok(false));
    }

    proptest::proptest! {
        #[test]
        fn default_unescape_agrees_with_a_byte_walk(
            field in proptest::collection::vec(
                proptest::sample::select(b"\\x2Cg\"ab".to_vec()),
                0..40,
            )
        ) {
            let mut want = Vec::new();
            let mut at = 0;
            while let Some(&b) = field.get(at) {
                match default_byte(&field, at).filter(|_| b == b'\\') {
                    Some(decoded) => (want.push(decoded), at += 4),
                    None => (want.push(b), at += 1),
                };
            }
            proptest::prop_assert_eq!(unescape(&field, Escape::Default).into_owned(), want);
        }

        #[test]
        fn default_fast_check_agrees_with_each_escape(
            field in proptest::collection::vec(
                proptest::sample::select(b"\\xX0aFg\"".to_vec()),
                0..24,
            )
        ) {
            let at = field.iter().position(|&b| b == b'\\').unwrap_or(field.len());
            let each = check_each_escape(&field, at, Escape::Default).is_ok();
            proptest::prop_assert_eq!(default_escapes_well_formed(&field[at..]), each);
        }
    }
}
