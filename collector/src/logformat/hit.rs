//! The normalized view of a record: the collector payload, whatever variables the format has.

use std::borrow::Cow;

use memchr::{memchr, memrchr};

use super::escape;
use super::record::{ParseError, Record};
use crate::civil::days_from_civil;

/// Where the variables that a [`Hit`] is made from are in a format (the first occurrence of each).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Roles {
    msec: Option<usize>,
    time_iso8601: Option<usize>,
    time_local: Option<usize>,
    remote_addr: Option<usize>,
    x_forwarded_for: Option<usize>,
    host: Option<usize>,
    http_host: Option<usize>,
    request_method: Option<usize>,
    request_uri: Option<usize>,
    request: Option<usize>,
    status: Option<usize>,
    referer: Option<usize>,
    user_agent: Option<usize>,
    uid_got: Option<usize>,
    uid_set: Option<usize>,
    request_id: Option<usize>,
    request_body: Option<usize>,
    cookie: Option<usize>,
}

impl Roles {
    /// Finds the roles among a format's (lower-case) variable names.
    pub(super) fn new<'n>(names: impl Iterator<Item = &'n str>) -> Roles {
        let mut roles = Roles::default();
        for (i, name) in names.enumerate() {
            let slot = match name {
                "msec" => &mut roles.msec,
                "time_iso8601" => &mut roles.time_iso8601,
                "time_local" => &mut roles.time_local,
                "remote_addr" => &mut roles.remote_addr,
                "http_x_forwarded_for" => &mut roles.x_forwarded_for,
                "host" => &mut roles.host,
                "http_host" => &mut roles.http_host,
                "request_method" => &mut roles.request_method,
                "request_uri" => &mut roles.request_uri,
                "request" => &mut roles.request,
                "status" => &mut roles.status,
                "http_referer" => &mut roles.referer,
                "http_user_agent" => &mut roles.user_agent,
                "uid_got" => &mut roles.uid_got,
                "uid_set" => &mut roles.uid_set,
                "request_id" => &mut roles.request_id,
                "request_body" => &mut roles.request_body,
                "http_cookie" => &mut roles.cookie,
                _ => continue,
            };
            slot.get_or_insert(i);
        }
        roles
    }
}

/// The collector payload of one hit, unescaped, whatever the log format: what the processor needs
/// from a log line. Text values are bytes as the client sent them (not necessarily UTF-8);
/// `None` is a variable that the format lacks or that nginx wrote as not set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hit<'a> {
    /// When nginx logged the hit, in milliseconds since the Unix epoch: from `$msec`, else
    /// `$time_iso8601`, else `$time_local` (the last two have whole seconds).
    pub collector_tstamp_ms: i64,
    /// `$remote_addr`: the peer's address.
    pub remote_addr: Option<Cow<'a, [u8]>>,
    /// `$http_x_forwarded_for`.
    pub x_forwarded_for: Option<Cow<'a, [u8]>>,
    /// `$host`, else `$http_host`.
    pub host: Option<Cow<'a, [u8]>>,
    /// `$request_method`, else the method of `$request`.
    pub method: Cow<'a, [u8]>,
    /// `$request_uri`, else the URI of `$request`: path and query string, as sent.
    pub uri: Cow<'a, [u8]>,
    /// `$status`: the response status.
    pub status: Option<u16>,
    /// `$http_referer`.
    pub referer: Option<Cow<'a, [u8]>>,
    /// `$http_user_agent`.
    pub user_agent: Option<Cow<'a, [u8]>>,
    /// `$uid_got`: the network-user-id cookie the browser sent (`name=value`, `userid` module).
    pub uid_got: Option<Cow<'a, [u8]>>,
    /// `$uid_set`: the network-user-id cookie nginx set on this response.
    pub uid_set: Option<Cow<'a, [u8]>>,
    /// `$request_id`: nginx's unique id of the request.
    pub request_id: Option<Cow<'a, [u8]>>,
    /// `$request_body`: the tp2 POST body.
    pub body: Option<Cow<'a, [u8]>>,
    /// `$http_cookie`: the whole Cookie header.
    pub cookie: Option<Cow<'a, [u8]>>,
}

impl Hit<'_> {
    /// The path part of [`uri`](Self::uri), before any `?`.
    pub fn path(&self) -> &[u8] {
        match self.question_mark() {
            Some(i) => &self.uri[..i],
            None => &self.uri,
        }
    }

    /// The query string of [`uri`](Self::uri), after the first `?`.
    pub fn query(&self) -> Option<&[u8]> {
        self.question_mark().map(|i| &self.uri[i + 1..])
    }

    /// Where the first `?` of [`uri`](Self::uri) is. A plain scan, which stops at the end of
    /// the path: a tracker's path is a few bytes, shorter than the set-up of a search call.
    fn question_mark(&self) -> Option<usize> {
        self.uri.iter().position(|&b| b == b'?')
    }
}

impl<'a> Record<'a> {
    /// Extracts the collector payload from whatever variables the format has.
    ///
    /// Fails when the format has no timestamp (`$msec`, `$time_iso8601` or `$time_local`) or no
    /// request (`$request_method` and `$request_uri`, or `$request`), or when one of those, or
    /// `$status`, is not set or malformed in this line. Everything else is optional.
    pub fn hit(&self) -> Result<Hit<'a>, ParseError> {
        let roles = &self.format().0.roles;
        let text = |role: Option<usize>| role.and_then(|i| self.get(i));
        let collector_tstamp_ms = self.collector_tstamp_ms(roles)?;
        let (method, uri) = self.request(roles)?;
        Ok(Hit {
            collector_tstamp_ms,
            remote_addr: text(roles.remote_addr),
            x_forwarded_for: text(roles.x_forwarded_for),
            host: text(roles.host).or_else(|| text(roles.http_host)),
            method,
            uri,
            status: match roles.status {
                Some(i) => match self.get(i) {
                    Some(v) => Some(parse_status(&v).ok_or_else(|| {
                        self.value_error(i, "an HTTP status code (three digits)")
                    })?),
                    None => None,
                },
                None => None,
            },
            referer: text(roles.referer),
            user_agent: text(roles.user_agent),
            uid_got: text(roles.uid_got),
            uid_set: text(roles.uid_set),
            request_id: text(roles.request_id),
            body: text(roles.request_body),
            cookie: text(roles.cookie),
        })
    }

    fn collector_tstamp_ms(&self, roles: &Roles) -> Result<i64, ParseError> {
        let (index, parse, expected): (usize, TimeParser, _) =
            match (roles.msec, roles.time_iso8601, roles.time_local) {
                (Some(i), _, _) => (
                    i,
                    parse_msec,
                    "seconds since the epoch with milliseconds (\"1700000000.123\")",
                ),
                (None, Some(i), _) => (
                    i,
                    parse_iso8601,
                    "an ISO 8601 time (\"2023-11-14T22:13:20+00:00\")",
                ),
                (None, None, Some(i)) => (
                    i,
                    parse_time_local,
                    "a local time (\"14/Nov/2023:22:13:20 +0000\")",
                ),
                (None, None, None) => {
                    return Err(ParseError::FormatLacks {
                        what: "collector timestamp",
                        needs: "$msec, $time_iso8601 or $time_local",
                    })
                }
            };
        self.get(index)
            .as_deref()
            .and_then(parse)
            .ok_or_else(|| self.value_error(index, expected))
    }

    /// The method and the URI, from `$request_method`/`$request_uri` or from `$request`.
    #[allow(clippy::type_complexity)]
    fn request(&self, roles: &Roles) -> Result<(Cow<'a, [u8]>, Cow<'a, [u8]>), ParseError> {
        let required = |index: usize, expected| {
            self.get(index)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| self.value_error(index, expected))
        };
        let from_request = || -> Result<_, ParseError> {
            let Some(index) = roles.request else {
                return Err(ParseError::FormatLacks {
                    what: "request",
                    needs: "$request_method and $request_uri, or $request",
                });
            };
            let expected = "a request line (\"GET /i?e=pv HTTP/1.1\")";
            let raw = self.raw(index).filter(|_| !self.is_absent(index));
            let (method, uri) = raw
                .and_then(split_request)
                .ok_or_else(|| self.value_error(index, expected))?;
            let escape = self.format().escape();
            Ok((
                escape::unescape(method, escape),
                escape::unescape(uri, escape),
            ))
        };
        match (roles.request_method, roles.request_uri) {
            (Some(m), Some(u)) => Ok((
                required(m, "a request method")?,
                required(u, "a request URI")?,
            )),
            (Some(m), None) => Ok((required(m, "a request method")?, from_request()?.1)),
            (None, Some(u)) => Ok((from_request()?.0, required(u, "a request URI")?)),
            (None, None) => from_request(),
        }
    }
}

/// Parses a timestamp variable into milliseconds since the epoch.
type TimeParser = fn(&[u8]) -> Option<i64>;

/// `request-line = method SP uri [ SP "HTTP/" version ]`, as nginx's `$request` (raw, escaped).
fn split_request(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr(b' ', raw)?;
    let (method, rest) = (&raw[..sp], &raw[sp + 1..]);
    let uri = match memrchr(b' ', rest) {
        Some(i) if rest[i + 1..].starts_with(b"HTTP/") => &rest[..i],
        _ => rest,
    };
    (!method.is_empty() && !uri.is_empty()).then_some((method, uri))
}

/// `status = 3DIGIT`
fn parse_status(v: &[u8]) -> Option<u16> {
    match *v {
        [a @ b'1'..=b'9', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// `1*DIGIT` of at most 15 digits, so that no arithmetic on it overflows.
fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0i64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// `msec = 1*DIGIT [ "." 1*DIGIT ]`: seconds since the epoch, nginx writes three decimals
/// (`1700000000.123`); further decimals are truncated.
fn parse_msec(v: &[u8]) -> Option<i64> {
    // A plain scan: `$msec` is a few bytes, shorter than the set-up of a search call.
    let (secs, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let mut ms = number(secs)? * 1000;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let scale = [100, 10, 1];
        for (d, scale) in frac.iter().zip(scale) {
            ms += i64::from(d - b'0') * scale;
        }
    }
    Some(ms)
}

/// A cursor over the bytes of a timestamp.
struct Cursor<'v>(&'v [u8]);

impl Cursor<'_> {
    /// `n DIGIT`
    fn digits(&mut self, n: usize) -> Option<i64> {
        let value = number(self.0.get(..n)?)?;
        self.0 = &self.0[n..];
        Some(value)
    }

    /// One expected byte.
    fn byte(&mut self, b: u8) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        (first == b).then(|| self.0 = rest)
    }

    /// One of the expected bytes; returns it.
    fn one_of(&mut self, set: &[u8]) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        set.contains(&first).then(|| {
            self.0 = rest;
            first
        })
    }

    /// `month = "Jan" / "Feb" / … / "Dec"`
    fn month_name(&mut self) -> Option<i64> {
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let name = self.0.get(..3)?;
        let month = MONTHS.iter().position(|m| &m[..] == name)?;
        self.0 = &self.0[3..];
        Some(month as i64 + 1)
    }

    /// `*DIGIT`, ignored (fractions of seconds).
    fn skip_digits(&mut self) {
        let n = self.0.iter().take_while(|d| d.is_ascii_digit()).count();
        self.0 = &self.0[n..];
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `iso8601 = YYYY "-" MM "-" DD "T" hh ":" mm ":" ss [ "." 1*DIGIT ] ( "Z" / sign hh ":" mm )`,
/// as nginx's `$time_iso8601` (`2023-11-14T22:13:20+00:00`).
fn parse_iso8601(v: &[u8]) -> Option<i64> {
    let mut c = Cursor(v);
    let year = c.digits(4)?;
    c.byte(b'-')?;
    let month = c.digits(2)?;
    c.byte(b'-')?;
    let day = c.digits(2)?;
    c.byte(b'T')?;
    let (hour, minute, second) = clock(&mut c)?;
    if c.byte(b'.').is_some() {
        c.digits(1)?;
        c.skip_digits();
    }
    let offset_minutes = match c.one_of(b"Z+-")? {
        b'Z' => 0,
        sign => {
            let hours = c.digits(2)?;
            c.byte(b':')?;
            let minutes = c.digits(2)?;
            utc_offset(sign, hours, minutes)?
        }
    };
    c.is_empty().then_some(())?;
    epoch_ms(year, month, day, hour, minute, second, offset_minutes)
}

/// `time-local = DD "/" month "/" YYYY ":" hh ":" mm ":" ss SP sign hhmm`, as nginx's
/// `$time_local` (`14/Nov/2023:22:13:20 +0000`).
fn parse_time_local(v: &[u8]) -> Option<i64> {
    let mut c = Cursor(v);
    let day = c.digits(2)?;
    c.byte(b'/')?;
    let month = c.month_name()?;
    c.byte(b'/')?;
    let year = c.digits(4)?;
    c.byte(b':')?;
    let (hour, minute, second) = clock(&mut c)?;
    c.byte(b' ')?;
    let sign = c.one_of(b"+-")?;
    let hours = c.digits(2)?;
    let minutes = c.digits(2)?;
    c.is_empty().then_some(())?;
    epoch_ms(
        year,
        month,
        day,
        hour,
        minute,
        second,
        utc_offset(sign, hours, minutes)?,
    )
}

/// `clock = hh ":" mm ":" ss`
fn clock(c: &mut Cursor<'_>) -> Option<(i64, i64, i64)> {
    let hour = c.digits(2)?;
    c.byte(b':')?;
    let minute = c.digits(2)?;
    c.byte(b':')?;
    let second = c.digits(2)?;
    (hour < 24 && minute < 60 && second < 60).then_some((hour, minute, second))
}

/// A UTC offset in minutes, east positive.
fn utc_offset(sign: u8, hours: i64, minutes: i64) -> Option<i64> {
    if hours > 23 || minutes > 59 {
        return None;
    }
    let minutes = hours * 60 + minutes;
    Some(if sign == b'-' { -minutes } else { minutes })
}

/// Milliseconds since the epoch of a civil time at a UTC offset; `None` for a date that does not
/// exist.
fn epoch_ms(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    offset_minutes: i64,
) -> Option<i64> {
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = ((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second;
    Some(seconds * 1000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_timestamps() {
        assert_eq!(parse_msec(b"1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_msec(b"1700000000.1"), Some(1_700_000_000_100));
        assert_eq!(parse_msec(b"1700000000.12345"), Some(1_700_000_000_123));
        assert_eq!(parse_msec(b"1700000000"), Some(1_700_000_000_000));
        for bad in [
            &b""[..],
            b".1",
            b"17.",
            b"17.1a",
            b"-1",
            b"1 ",
            b"9999999999999999",
        ] {
            assert_eq!(parse_msec(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_iso8601(b"2023-11-14T22:13:20+00:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_iso8601(b"2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_iso8601(b"2023-11-14T20:13:20.5-02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_iso8601(b"2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_iso8601(b"1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(parse_iso8601(b"1969-12-31T23:59:59+00:00"), Some(-1000));
        assert_eq!(
            parse_iso8601(b"2024-02-29T00:00:00+00:00"),
            Some(1_709_164_800_000)
        );
        for bad in [
            &b"2023-02-29T00:00:00+00:00"[..],
            b"2023-11-14T24:00:00+00:00",
            b"2023-11-14 22:13:20+00:00",
            b"2023-11-14T22:13:20",
            b"2023-11-14T22:13:20+00:00x",
            b"2023-13-14T22:13:20+00:00",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_time_local(b"14/Nov/2023:22:13:20 +0000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_local(b"14/Nov/2023:17:13:20 -0500"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time_local(b"01/Jan/2000:00:00:00 +0000"),
            Some(946_684_800_000)
        );
        for bad in [
            &b"14/nov/2023:22:13:20 +0000"[..],
            b"14/Nov/2023:22:13:20",
            b"14/Nov/2023 22:13:20 +0000",
        ] {
            assert_eq!(parse_time_local(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn splits_request_lines() {
        assert_eq!(
            split_request(b"GET /i?a=b HTTP/1.1"),
            Some((&b"GET"[..], &b"/i?a=b"[..]))
        );
        assert_eq!(
            split_request(b"GET /a b HTTP/1.0"),
            Some((&b"GET"[..], &b"/a b"[..]))
        );
        assert_eq!(split_request(b"GET /i"), Some((&b"GET"[..], &b"/i"[..])));
        assert_eq!(split_request(b"\\x16\\x03\\x01"), None);
        assert_eq!(split_request(b"GET "), None);
    }

    #[test]
    fn status_is_three_digits() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"099"), None);
        assert_eq!(parse_status(b"2000"), None);
    }
}
