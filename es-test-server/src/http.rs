//! HTTP/1.1 on a blocking stream: requests read with `httparse` (Content-Length or chunked
//! bodies, several requests per connection), responses written with a Content-Length.

use std::io::{self, Read, Write};

/// The largest body accepted, as Elasticsearch's default `http.max_content_length`.
pub const MAX_BODY_BYTES: usize = 100 << 20;
const MAX_HEAD_BYTES: usize = 64 << 10;

/// One request.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as sent (still gzipped if it was).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed.
    #[error("reading a request: {0}")]
    Io(#[from] io::Error),
    /// Not HTTP, or a head or body too large; answered with this status, then closed.
    #[error("bad request ({0}): {1}")]
    Bad(u16, String),
}

/// Reads the next request; `None` when the peer closed the connection between requests.
/// `buf` keeps bytes read past this request for the next call.
pub fn read_request(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, ReadError> {
    let mut chunk = [0u8; 64 << 10];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("GET").to_owned();
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_owned(),
                        )
                    })
                    .collect();
                let mut request = Request {
                    method,
                    path: path.to_owned(),
                    query: query.to_owned(),
                    headers,
                    body: Vec::new(),
                };
                buf.drain(..head_len);
                let chunked = request
                    .header("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                if chunked {
                    loop {
                        if let Some((body, used)) = decode_chunked(buf)? {
                            request.body = body;
                            buf.drain(..used);
                            return Ok(Some(request));
                        }
                        fill(stream, buf, &mut chunk)?;
                    }
                }
                let length = match request.header("content-length") {
                    None => 0,
                    Some(v) => v
                        .parse::<usize>()
                        .map_err(|_| ReadError::Bad(400, format!("bad Content-Length [{v}]")))?,
                };
                if length > MAX_BODY_BYTES {
                    return Err(ReadError::Bad(413, format!("body of {length} bytes")));
                }
                while buf.len() < length {
                    fill(stream, buf, &mut chunk)?;
                }
                request.body = buf.drain(..length).collect();
                return Ok(Some(request));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD_BYTES {
                    return Err(ReadError::Bad(431, "request head too large".into()));
                }
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return if buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(ReadError::Bad(400, format!("not HTTP: {e}"))),
        }
    }
}

fn fill(stream: &mut impl Read, buf: &mut Vec<u8>, chunk: &mut [u8]) -> Result<(), ReadError> {
    let n = stream.read(chunk)?;
    if n == 0 {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// A complete chunked body at the start of `data` and the bytes it used, or `None` if more
/// bytes are needed.
fn decode_chunked(data: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ReadError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = data[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[at..at + line_end]).unwrap_or("");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(400, format!("bad chunk size [{size_text}]")))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                let Some(end) = data[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "chunked body too large".into()));
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// A JSON body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    /// Writes the response; `head_only` for `HEAD`.
    pub fn write_to(&self, stream: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-elastic-product: Elasticsearch\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        stream.write_all(&bytes)?;
        stream.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_length_and_chunked_bodies_follow_each_other() {
        let wire =
            b"POST /_bulk?refresh=true HTTP/1.1\r\nContent-Length: 3\r\nContent-Type: x\r\n\r\nabc\
POST /a/_bulk HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n1;x=y\r\nf\r\n0\r\n\r\n";
        let mut stream = &wire[..];
        let mut buf = Vec::new();
        let first = read_request(&mut stream, &mut buf).unwrap().unwrap();
        assert_eq!(
            (first.path.as_str(), first.query.as_str()),
            ("/_bulk", "refresh=true")
        );
        assert_eq!(first.body, b"abc");
        assert_eq!(first.header("content-type"), Some("x"));
        let second = read_request(&mut stream, &mut buf).unwrap().unwrap();
        assert_eq!(second.body, b"def");
        assert!(read_request(&mut stream, &mut buf).unwrap().is_none());
    }
}
