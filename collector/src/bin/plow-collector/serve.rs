//! `plow-collector serve`: the tracker endpoint without nginx.
//!
//! A small HTTP/1.1 server, one thread per connection, that answers exactly as the rendered nginx
//! config does (same routes, statuses, cookie and CORS headers) and appends one access-log line
//! per request in the canonical format, written before the response is sent. Requests are parsed
//! with `httparse` so that `$request_uri` is the request target byte for byte.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use plowline_collector::civil::civil_from_days;
use plowline_collector::logformat::LogFormat;
use plowline_collector::nginx::EndpointConfig;
use plowline_collector::uid::Uid;

/// Validated settings of the server.
#[derive(Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub access_log: PathBuf,
    pub endpoint: EndpointConfig,
    pub max_connections: usize,
}

/// The 1x1 transparent gif that nginx's `empty_gif` answers with.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x01, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x4c, 0x01, 0x00, 0x3b,
];
const TP2_PATH: &[u8] = b"/com.snowplowanalytics.snowplow/tp2";
const MAX_HEADERS: usize = 100;
const KEEPALIVE: Duration = Duration::from_secs(65);

struct Shared {
    options: Options,
    log: Mutex<File>,
    connections: AtomicUsize,
}

/// Binds, then serves until the process is stopped. Every line is written to the access log
/// before its response, so stopping the process loses no logged hit.
pub fn run(options: Options) -> anyhow::Result<()> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&options.access_log)
        .with_context(|| {
            format!(
                "cannot open the access log {}: check that its directory exists and is writable",
                options.access_log.display()
            )
        })?;
    let listener = TcpListener::bind(options.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another server using the port?",
            options.listen
        )
    })?;
    tracing::info!(
        listen = %listener.local_addr()?,
        access_log = %options.access_log.display(),
        "serving the tracker endpoint"
    );
    let shared = Arc::new(Shared {
        options,
        log: Mutex::new(log),
        connections: AtomicUsize::new(0),
    });
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        if shared.connections.fetch_add(1, Ordering::AcqRel) >= shared.options.max_connections {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(
                max_connections = shared.options.max_connections,
                "too many connections, closing a new one"
            );
            continue;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            if let Err(error) = serve_connection(&shared, stream) {
                tracing::debug!(%error, "connection ended");
            }
            shared.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}

/// One parsed request, with everything the log line needs.
struct Request {
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    keep_alive: bool,
    /// The body is over the limit: answered 413 and not read.
    too_large: bool,
}

impl Request {
    /// The first header of this name (`$http_*` of nginx).
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// All headers of this name joined with `sep` (nginx does this for X-Forwarded-For and Cookie).
    fn joined(&self, name: &str, sep: &[u8]) -> Option<Vec<u8>> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice());
        let first = values.next()?;
        let mut out = first.to_vec();
        for value in values {
            out.extend_from_slice(sep);
            out.extend_from_slice(value);
        }
        Some(out)
    }
}

/// What the endpoint answers.
struct Response {
    status: u16,
    content_type: &'static str,
    body: &'static [u8],
    headers: Vec<(&'static str, String)>,
    log: bool,
}

fn serve_connection(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(KEEPALIVE))?;
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &shared.options.endpoint)? {
            ReadOutcome::Request(request) => request,
            ReadOutcome::Closed => return Ok(()),
            ReadOutcome::Reject(status) => {
                let response = Response::plain(status, b"");
                write_response(&mut writer, &response, &[], false)?;
                return Ok(());
            }
        };
        let (response, set_cookie, line) = handle(shared, &request, peer);
        if let Some(line) = line {
            shared
                .log
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .write_all(&line)
                .map_err(|error| {
                    tracing::error!(%error, "cannot write the access log: hits are being lost");
                    error
                })?;
        }
        let cookie = set_cookie.as_slice();
        write_response(&mut writer, &response, cookie, request.keep_alive)?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

enum ReadOutcome {
    Request(Request),
    Closed,
    Reject(u16),
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    endpoint: &EndpointConfig,
) -> io::Result<ReadOutcome> {
    let max_header = endpoint.max_header_bytes as usize * 4;
    let mut head = Vec::new();
    // Read the head up to the blank line.
    loop {
        let before = head.len();
        let n = reader.by_ref().take(8192).read_until(b'\n', &mut head)?;
        if n == 0 {
            return Ok(if head.is_empty() {
                ReadOutcome::Closed
            } else {
                ReadOutcome::Reject(400)
            });
        }
        if head.len() > max_header {
            return Ok(ReadOutcome::Reject(414));
        }
        let line = &head[before..];
        if before == 0 && (line == b"\r\n" || line == b"\n") {
            head.clear(); // tolerate blank lines between requests, as nginx does
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Ok(ReadOutcome::Reject(400)),
    }
    let method = parsed.method.unwrap_or("GET").to_owned();
    let target = parsed.path.unwrap_or("/").as_bytes().to_vec();
    let version = parsed.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        keep_alive: version == 1,
        too_large: false,
    };
    if let Some(connection) = request.header("connection") {
        let connection = String::from_utf8_lossy(connection).to_ascii_lowercase();
        if connection.contains("close") {
            request.keep_alive = false;
        } else if connection.contains("keep-alive") {
            request.keep_alive = true;
        }
    }
    if request.header("transfer-encoding").is_some() {
        // nginx would read a chunked body; trackers always send Content-Length.
        return Ok(ReadOutcome::Reject(411));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(value) => match std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
            Some(length) => length,
            None => return Ok(ReadOutcome::Reject(400)),
        },
    };
    if length > endpoint.max_body_bytes as usize {
        // Answered 413 without reading the body; the connection closes, as nginx does.
        request.too_large = true;
        request.keep_alive = false;
        return Ok(ReadOutcome::Request(request));
    }
    request.body.resize(length, 0);
    reader.read_exact(&mut request.body)?;
    Ok(ReadOutcome::Request(request))
}

impl Response {
    fn plain(status: u16, body: &'static [u8]) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body,
            headers: Vec::new(),
            log: true,
        }
    }

    fn gif() -> Response {
        Response {
            status: 200,
            content_type: "image/gif",
            body: GIF,
            headers: vec![(
                "Cache-Control",
                "no-cache, no-store, must-revalidate".to_owned(),
            )],
            log: true,
        }
    }
}

/// Routes a request as the nginx config does; returns the response, the `Set-Cookie` value if a
/// new id was issued, and the access-log line to write.
fn handle(
    shared: &Shared,
    request: &Request,
    peer: SocketAddr,
) -> (Response, Vec<u8>, Option<Vec<u8>>) {
    let endpoint = &shared.options.endpoint;
    let path = request
        .target
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default();
    let origin = request
        .header("origin")
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .unwrap_or_default();
    let cors = |response: &mut Response| {
        response
            .headers
            .push(("Access-Control-Allow-Origin", origin.clone()));
        response
            .headers
            .push(("Access-Control-Allow-Credentials", "true".to_owned()));
    };
    let get_like = matches!(request.method.as_str(), "GET" | "HEAD");
    let too_large = request.too_large;
    let mut body_logged = false;
    let mut userid = true;
    let response = match path {
        b"/i" | b"/ice.png" if get_like => Response::gif(),
        b"/i" | b"/ice.png" => Response::plain(405, b""),
        TP2_PATH if too_large => Response::plain(413, b""),
        TP2_PATH if request.method == "OPTIONS" => {
            let mut response = Response::plain(204, b"");
            cors(&mut response);
            response.headers.push((
                "Access-Control-Allow-Headers",
                "Content-Type, SP-Anonymous".to_owned(),
            ));
            response
                .headers
                .push(("Access-Control-Max-Age", "86400".to_owned()));
            response
        }
        TP2_PATH if get_like => {
            body_logged = true;
            Response::gif()
        }
        TP2_PATH => {
            body_logged = true;
            let mut response = Response::plain(200, b"ok");
            cors(&mut response);
            response
        }
        b"/health" => {
            userid = false;
            Response {
                log: false,
                ..Response::plain(200, b"OK\n")
            }
        }
        _ if too_large => Response::plain(413, b""),
        _ => Response::plain(404, b""),
    };

    let cookie_name = endpoint.cookie_name.as_str();
    let got = request
        .joined("cookie", b"; ")
        .and_then(|cookies| find_cookie(&cookies, cookie_name).and_then(Uid::from_cookie_value));
    let set = if userid && got.is_none() {
        Some(new_uid())
    } else {
        None
    };
    let set_cookie = set
        .map(|uid| set_cookie_header(endpoint, &uid))
        .unwrap_or_default();

    let line = response.log.then(|| {
        let msec = msec_now();
        let remote_addr = peer.ip().to_string();
        let host = host_of(request);
        let status = response.status.to_string();
        let uid_got = got.map(|uid| uid.logged(cookie_name));
        let uid_set = set.map(|uid| uid.logged(cookie_name));
        let request_id = random_hex_id();
        let forwarded = request.joined("x-forwarded-for", b", ");
        let body = (body_logged && !request.body.is_empty()).then_some(request.body.as_slice());
        let mut line = Vec::with_capacity(512 + request.target.len() + request.body.len());
        LogFormat::canonical().write_line(
            |var| match var {
                "msec" => Some(msec.as_bytes()),
                "remote_addr" => Some(remote_addr.as_bytes()),
                "http_x_forwarded_for" => forwarded.as_deref(),
                "host" => Some(host.as_bytes()),
                "request_method" => Some(request.method.as_bytes()),
                "request_uri" => Some(&request.target),
                "status" => Some(status.as_bytes()),
                "http_referer" => request.header("referer"),
                "http_user_agent" => request.header("user-agent"),
                "uid_got" => uid_got.as_deref().map(str::as_bytes),
                "uid_set" => uid_set.as_deref().map(str::as_bytes),
                "request_id" => Some(request_id.as_bytes()),
                "request_body" => body,
                _ => None,
            },
            &mut line,
        );
        line
    });
    (response, set_cookie, line)
}

/// The value of cookie `name` in a `Cookie` header, as nginx's userid module finds it.
fn find_cookie<'a>(cookies: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookies
        .split(|&b| b == b';' || b == b',')
        .map(|pair| pair.trim_ascii_start())
        .find_map(|pair| {
            let rest = pair.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=")
        })
}

/// nginx's `$host`: the Host header, lower-cased, without its port; else the server name.
fn host_of(request: &Request) -> String {
    let Some(host) = request.header("host") else {
        return "_".to_owned();
    };
    let host = String::from_utf8_lossy(host).to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    match host.rfind(':') {
        Some(colon) if !host.ends_with(']') => host[..colon].to_owned(),
        _ => host.to_owned(),
    }
}

/// A new user id: random, with the time in the second word as nginx has it.
fn new_uid() -> Uid {
    let mut bytes: [u8; 16] = rand::random();
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default();
    bytes[4..8].copy_from_slice(&secs.to_be_bytes());
    Uid(bytes)
}

fn set_cookie_header(endpoint: &EndpointConfig, uid: &Uid) -> Vec<u8> {
    let expires =
        SystemTime::now() + Duration::from_secs(86_400 * endpoint.cookie_expires_days as u64);
    let mut value = format!(
        "{}={}; expires={}",
        endpoint.cookie_name,
        uid.cookie_value(),
        http_cookie_date(expires)
    );
    if let Some(domain) = &endpoint.cookie_domain {
        value.push_str("; domain=");
        value.push_str(domain);
    }
    value.push_str("; path=/; secure; samesite=none");
    value.into_bytes()
}

fn msec_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

fn random_hex_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Mon, 22-Nov-27 00:34:34 GMT`, the cookie date form nginx writes.
fn http_cookie_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{}, {:02}-{}-{:02} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year % 100,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    set_cookie: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(512);
    let reason = match response.status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Not Allowed",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        _ => "",
    };
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", response.status);
    if response.status != 204 {
        let _ = write!(
            out,
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            response.content_type,
            response.body.len()
        );
    }
    let _ = write!(
        out,
        "Connection: {}\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (name, value) in &response.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if !set_cookie.is_empty() {
        out.extend_from_slice(b"Set-Cookie: ");
        out.extend_from_slice(set_cookie);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.body);
    writer.write_all(&out)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_dates_match_nginx() {
        // nginx 1.22 wrote `expires=Mon, 22-Nov-27 00:34:34 GMT` for this instant.
        let t = UNIX_EPOCH + Duration::from_secs(1_826_843_674);
        assert_eq!(http_cookie_date(t), "Mon, 22-Nov-27 00:34:34 GMT");
    }

    #[test]
    fn finds_the_cookie_among_others() {
        assert_eq!(find_cookie(b"a=b; sp=XYZ; c=d", "sp"), Some(&b"XYZ"[..]));
        assert_eq!(find_cookie(b"spx=1; sp=2", "sp"), Some(&b"2"[..]));
        assert_eq!(find_cookie(b"a=b", "sp"), None);
    }
}
