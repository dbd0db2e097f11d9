//! `plow-collector serve` and real nginx, given the same generated requests, answer with the same
//! status and cookie behaviour and write access-log lines that parse to the same values (all but
//! the time, the request id and the newly issued cookie, which differ by nature).

mod support;

use plowline_collector::logformat::LogFormat;
use plowline_collector::uid::Uid;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{header_of, read_log_lines, send_raw, status_of};

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: &'static str,
    query: Option<Vec<u8>>,
    user_agent: Option<Vec<u8>>,
    referer: Option<Vec<u8>>,
    forwarded: Vec<Vec<u8>>,
    cookie: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
}

impl Req {
    /// The raw request; `marker` goes first in X-Forwarded-For so that log lines can be matched
    /// to requests (nginx's workers may write the lines of consecutive requests out of order).
    fn to_bytes(&self, marker: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        if let Some(query) = &self.query {
            out.push(b'?');
            out.extend_from_slice(query);
        }
        out.extend_from_slice(b" HTTP/1.1\r\nHost: collector.example.com\r\nConnection: close\r\n");
        let mut header = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        header("X-Forwarded-For", format!("req-{marker}").as_bytes());
        if let Some(ua) = &self.user_agent {
            header("User-Agent", ua);
        }
        if let Some(referer) = &self.referer {
            header("Referer", referer);
        }
        for forwarded in &self.forwarded {
            header("X-Forwarded-For", forwarded);
        }
        if let Some(cookie) = &self.cookie {
            header("Cookie", cookie);
        }
        if let Some(body) = &self.body {
            header("Content-Type", b"application/json; charset=UTF-8");
            header("Content-Length", body.len().to_string().as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            out.extend_from_slice(body);
        }
        out
    }
}

/// Bytes a tracker (or a careless client) puts in a query string: percent-escapes, `+`, JSON
/// punctuation left raw, and raw UTF-8.
fn query_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        "[a-zA-Z0-9_.~-]{1,12}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| format!("%{b:02X}").into_bytes()),
        Just(b"+".to_vec()),
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        prop::sample::select(vec![
            "{", "}", "\"", "'", "|", "[", "]", ":", ",", "/", "@", "!", "*", "(", ")", "$", ";"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[é中😀]{1,3}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Header values: printable ASCII including `"` and `\`, tabs inside, and raw non-ASCII bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => 0x20u8..0x7f,
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ];
    prop::collection::vec(byte, 1..120).prop_map(|mut v| {
        // Leading and trailing whitespace is not part of a header value.
        v[0] = b'x';
        if let Some(last) = v.last_mut() {
            *last = b'y';
        }
        v
    })
}

fn cookie() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<[u8; 16]>()
            .prop_map(|bytes| format!("sp={}", Uid(bytes).cookie_value()).into_bytes()),
        any::<[u8; 16]>().prop_map(|bytes| format!(
            "_ga=1; sp={}; theme=dark",
            Uid(bytes).cookie_value()
        )
        .into_bytes()),
        Just(b"sp=too-short".to_vec()),
        Just(b"sp=!!!!!!!!!!!!!!!!!!!!!!!!!!".to_vec()),
        Just(b"other=1".to_vec()),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    let target = prop::sample::select(vec![
        ("GET", "/i"),
        ("GET", "/i"),
        ("GET", "/ice.png"),
        ("HEAD", "/i"),
        ("POST", "/i"),
        ("GET", "/com.snowplowanalytics.snowplow/tp2"),
        ("POST", "/com.snowplowanalytics.snowplow/tp2"),
        ("POST", "/com.snowplowanalytics.snowplow/tp2"),
        ("OPTIONS", "/com.snowplowanalytics.snowplow/tp2"),
        ("GET", "/favicon.ico"),
    ]);
    (
        target,
        prop::option::of(query_bytes()),
        prop::option::of(header_value()),
        prop::option::of(header_value()),
        prop::collection::vec("[0-9a-f.:, ]{1,40}", 0..3),
        prop::option::of(cookie()),
        prop::collection::vec(any::<u8>(), 1..300),
    )
        .prop_map(
            |((method, path), query, user_agent, referer, forwarded, cookie, body)| Req {
                method,
                path,
                query,
                user_agent,
                referer,
                forwarded: forwarded
                    .into_iter()
                    .map(|f| format!("x{}y", f).into_bytes())
                    .collect(),
                cookie,
                body: (method == "POST").then_some(body),
            },
        )
}

/// The fields that must agree; `uid_set` is compared by presence, since each server issues its own.
fn comparable(line: &[u8]) -> Vec<(String, Option<String>)> {
    let format = LogFormat::canonical();
    let record = format
        .parse(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
    record
        .iter()
        .filter(|(name, _)| !matches!(*name, "msec" | "request_id"))
        .map(|(name, value)| {
            let value = value.map(|v| {
                if name == "uid_set" {
                    // Each server issues its own id: compare that one was issued, in nginx's form.
                    assert!(
                        Uid::parse_logged(&v).is_some(),
                        "{}",
                        String::from_utf8_lossy(&v)
                    );
                    return "<issued>".to_owned();
                }
                format!("{:?}", bstr_like(&v))
            });
            (name.to_owned(), value)
        })
        .collect()
}

/// Both servers run for the whole property test (started once, stopped when the test ends);
/// each generated case sends its requests to both and compares the lines they add to their logs.
#[test]
fn serve_logs_what_nginx_logs() {
    let nginx = support::start_nginx("serve_vs_nginx_nginx");
    let serve = support::start_serve("serve_vs_nginx_serve");
    // Lines already in each log: every case compares only the lines its own requests added.
    let seen = std::cell::Cell::new((0, 0));
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(request(), 1..12), |requests| {
        let answers: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(marker, req)| {
                let raw = req.to_bytes(marker);
                (send_raw(nginx.addr, &raw), send_raw(serve.addr, &raw))
            })
            .collect();
        let (nginx_start, serve_start) = seen.get();
        let logged = |server: &support::Running, start: usize| {
            let lines = read_log_lines(&server.access_log, start + requests.len());
            lines[start.min(lines.len())..].to_vec()
        };
        let mut nginx_lines = logged(&nginx, nginx_start);
        let mut serve_lines = logged(&serve, serve_start);
        seen.set((
            nginx_start + nginx_lines.len(),
            serve_start + serve_lines.len(),
        ));
        nginx_lines.sort_by_key(|line| marker_of(line));
        serve_lines.sort_by_key(|line| marker_of(line));

        for (marker, (req, (from_nginx, from_serve))) in requests.iter().zip(&answers).enumerate() {
            let shown = String::from_utf8_lossy(&req.to_bytes(marker)).into_owned();
            prop_assert_eq!(
                status_of(from_nginx),
                status_of(from_serve),
                "request: {:?}",
                shown
            );
            prop_assert_eq!(
                header_of(from_nginx, "set-cookie").is_some(),
                header_of(from_serve, "set-cookie").is_some(),
                "request: {:?}",
                shown
            );
        }
        prop_assert_eq!(nginx_lines.len(), requests.len());
        prop_assert_eq!(serve_lines.len(), requests.len());
        for (marker, (req, (a, b))) in requests
            .iter()
            .zip(nginx_lines.iter().zip(&serve_lines))
            .enumerate()
        {
            prop_assert_eq!(marker_of(a), marker, "a line per request");
            prop_assert_eq!(
                comparable(a),
                comparable(b),
                "request: {:?}\nnginx: {}\nserve: {}",
                String::from_utf8_lossy(&req.to_bytes(marker)),
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
        Ok::<(), TestCaseError>(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// The request marker at the start of a line's X-Forwarded-For.
fn marker_of(line: &[u8]) -> usize {
    let record = LogFormat::canonical().parse(line).unwrap();
    let forwarded = record.var("http_x_forwarded_for").unwrap_or_default();
    let digits = forwarded
        .strip_prefix(b"req-")
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect::<String>();
    digits.parse().unwrap_or(usize::MAX)
}

/// Bytes shown as text with escapes for the non-UTF-8 parts, for readable failures.
fn bstr_like(bytes: &[u8]) -> String {
    bytes.utf8_chunks().fold(String::new(), |mut out, chunk| {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
        out
    })
}
