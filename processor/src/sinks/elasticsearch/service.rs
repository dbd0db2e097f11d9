//! The HTTP client: one `reqwest` client (rustls, no OpenSSL) for every endpoint, requests sent
//! to the endpoints in turn (a failed node is left for the next one on retry), credentials on
//! every request, request bodies gzipped when configured.

use std::io::Write as _;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;

use super::config::{Auth, Validated};

/// An answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    /// The endpoint that answered.
    pub endpoint: String,
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// Bytes of the request body sent (after compression).
    pub sent_bytes: usize,
}

/// A request that got no answer (connection refused or reset, timeout …).
#[derive(Debug, thiserror::Error)]
#[error("{method} {endpoint}{path}: {message}")]
pub struct TransportError {
    /// The request's method.
    pub method: Method,
    /// The endpoint tried.
    pub endpoint: String,
    /// The path.
    pub path: String,
    /// The error and its causes.
    pub message: String,
}

/// Sends requests to the cluster.
#[derive(Debug, Clone)]
pub struct Service {
    client: reqwest::Client,
    endpoints: Vec<String>,
    next: usize,
    authorization: Option<HeaderValue>,
    gzip: bool,
}

/// An error with its chain of causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `data` gzipped (fastest level: the body is sent once, over a network faster than the CPU).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(data).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

impl Service {
    /// A client for `config`; fails on an unreadable CA file or invalid credentials.
    pub fn new(config: &Validated) -> Result<Service, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("plowline/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_certificate_path {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading ca_certificate_path {}: {e}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_certificate_path {}: {}", path.display(), chain(&e)))?;
            if certificates.is_empty() {
                return Err(format!(
                    "ca_certificate_path {}: no PEM certificate in it",
                    path.display()
                ));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let authorization = match &config.auth {
            Auth::None => None,
            Auth::ApiKey(key) => Some(format!("ApiKey {key}")),
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                Some(format!("Basic {encoded}"))
            }
        }
        .map(|value| {
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                "api_key or password holds characters not allowed in a header".to_owned()
            })?;
            value.set_sensitive(true);
            Ok::<_, String>(value)
        })
        .transpose()?;
        let client = builder
            .build()
            .map_err(|e| format!("building the HTTP client: {}", chain(&e)))?;
        Ok(Service {
            client,
            endpoints: config.endpoints.clone(),
            next: 0,
            authorization,
            gzip: config.gzip,
        })
    }

    /// Sends one request to the next endpoint. `body` is gzipped here when configured.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, TransportError> {
        let endpoint = self.endpoints[self.next % self.endpoints.len()].clone();
        self.next = self.next.wrapping_add(1);
        let mut request = self
            .client
            .request(method.clone(), format!("{endpoint}{path}"));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut sent_bytes = 0;
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, content_type);
            let body = if self.gzip {
                request = request.header(CONTENT_ENCODING, "gzip");
                gzip(&body)
            } else {
                body
            };
            sent_bytes = body.len();
            request = request.body(body);
        }
        let failed = |e: reqwest::Error| TransportError {
            method: method.clone(),
            endpoint: endpoint.clone(),
            path: path.to_owned(),
            message: chain(&e),
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(failed)?.to_vec();
        Ok(Reply {
            endpoint,
            status,
            retry_after,
            body,
            sent_bytes,
        })
    }
}
