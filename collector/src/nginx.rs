//! The nginx config for the tracker endpoint, rendered from one template so that the files shipped
//! in `nginx/` and the configs the tests and the quickstart run can never drift apart.
//!
//! The endpoint answers like Snowplow's collector:
//! - `GET /i`, `GET /ice.png`: a 1x1 gif (tp1);
//! - `POST /com.snowplowanalytics.snowplow/tp2`: `200 ok`, with CORS for browsers, and the body
//!   kept in `$request_body` so the access log carries it;
//! - `GET /health`: `200 OK`, not logged;
//! - the first-party `network_userid` cookie, set by nginx's `userid` module and logged.
//!
//! nginx only reads a request body when a module asks for it, and `empty_gif` does not. The tp2
//! location therefore mirrors the request to an internal no-op location: `mirror` reads the body
//! before the content phase, which makes `$request_body` available to the log. The body stays in
//! memory (one buffer as large as the largest accepted body), so it is never lost to a temp file.

use std::fmt::Write as _;

use crate::logformat::LogFormat;

/// The name of the canonical `log_format` in rendered configs.
pub const LOG_FORMAT_NAME: &str = "plowline";

/// What varies between deployments of the tracker endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// nginx `listen` argument: a port, `ADDR:PORT` or `unix:PATH`.
    pub listen: String,
    /// nginx `server_name`.
    pub server_name: String,
    /// Where nginx writes the access log that `plow-shipper` tails.
    pub access_log: String,
    /// Name of the first-party cookie holding the network user id.
    pub cookie_name: String,
    /// Domain of the cookie (`.example.com` to share it across subdomains); `None` for the host
    /// the request was sent to.
    pub cookie_domain: Option<String>,
    /// Lifetime of the cookie in days.
    pub cookie_expires_days: u32,
    /// Largest accepted tp2 POST body; larger ones get `413` (and are logged with that status).
    pub max_body_bytes: u32,
    /// Size of one buffer for long request lines and headers (GET hits with contexts are long);
    /// a request line longer than this gets `414`.
    pub max_header_bytes: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            listen: "80".to_owned(),
            server_name: "_".to_owned(),
            access_log: "/var/log/nginx/tracker.log".to_owned(),
            cookie_name: "sp".to_owned(),
            cookie_domain: None,
            cookie_expires_days: 365,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Paths of a self-contained nginx instance, all under one prefix directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standalone {
    /// The directory passed to `nginx -p`; pid file, error log and temp dirs live under it.
    pub prefix: String,
}

impl EndpointConfig {
    /// The `http`-context snippet: the `log_format` and the tracker `server` block. This is what
    /// `nginx/plowline.conf` holds; include it from an existing `nginx.conf`.
    pub fn render_http_snippet(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# plowline tracker endpoint, rendered by `plow-collector nginx-conf`.\n\
             # Re-render it rather than editing by hand: the log format must match the processor's.\n\
             # Include it in the http context of nginx.conf.\n\n",
        );
        out.push_str(&LogFormat::canonical().nginx_directive(LOG_FORMAT_NAME));
        out.push_str("\n\n");
        self.write_server(&mut out);
        out
    }

    /// A complete `nginx.conf` for `nginx -p PREFIX -c FILE -g 'daemon off;'`, as root or not: the
    /// pid file, error log and every temp path are under the prefix.
    pub fn render_standalone(&self, standalone: &Standalone) -> String {
        let prefix = standalone.prefix.trim_end_matches('/');
        let mut out = String::new();
        let _ = write!(
            out,
            "# Standalone nginx for the plowline tracker endpoint, rendered by\n\
             # `plow-collector nginx-conf --standalone --prefix {prefix}`.\n\
             # Run: nginx -p {prefix} -c {prefix}/nginx.conf -g 'daemon off;'\n\n\
             worker_processes auto;\n\
             pid {prefix}/nginx.pid;\n\
             error_log {prefix}/error.log warn;\n\n\
             events {{\n    worker_connections 4096;\n}}\n\n\
             http {{\n\
             \x20   client_body_temp_path {prefix}/client_body_temp;\n\
             \x20   proxy_temp_path {prefix}/proxy_temp;\n\
             \x20   fastcgi_temp_path {prefix}/fastcgi_temp;\n\
             \x20   uwsgi_temp_path {prefix}/uwsgi_temp;\n\
             \x20   scgi_temp_path {prefix}/scgi_temp;\n\
             \x20   default_type application/octet-stream;\n\
             \x20   keepalive_timeout 65;\n\n"
        );
        for line in self.render_http_snippet().lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "    {line}");
            }
        }
        out.push_str("}\n");
        out
    }

    fn write_server(&self, out: &mut String) {
        let EndpointConfig {
            listen,
            server_name,
            access_log,
            cookie_name,
            cookie_domain,
            cookie_expires_days,
            max_body_bytes,
            max_header_bytes,
        } = self;
        let domain = cookie_domain.as_deref().unwrap_or("none");
        let _ = write!(
            out,
            "server {{\n\
             \x20   listen {listen};\n\
             \x20   server_name {server_name};\n\
             \x20   server_tokens off;\n\n\
             \x20   access_log {access_log} {LOG_FORMAT_NAME};\n\n\
             \x20   # Limits: tracker hits are small. Bodies stay in one in-memory buffer so that\n\
             \x20   # $request_body is always logged; larger bodies get 413 (logged with that status).\n\
             \x20   client_max_body_size {max_body_bytes};\n\
             \x20   client_body_buffer_size {max_body_bytes};\n\
             \x20   client_body_in_single_buffer on;\n\
             \x20   client_header_buffer_size 4k;\n\
             \x20   large_client_header_buffers 4 {max_header_bytes};\n\n\
             \x20   # First-party network user id, logged as $uid_got / $uid_set.\n\
             \x20   userid on;\n\
             \x20   userid_name {cookie_name};\n\
             \x20   userid_domain {domain};\n\
             \x20   userid_path /;\n\
             \x20   userid_expires {cookie_expires_days}d;\n\
             \x20   userid_flags samesite=none secure;\n\n\
             \x20   # tp1: GET hits answered with a 1x1 gif.\n\
             \x20   location = /i {{\n\
             \x20       add_header Cache-Control \"no-cache, no-store, must-revalidate\";\n\
             \x20       empty_gif;\n\
             \x20   }}\n\
             \x20   location = /ice.png {{\n\
             \x20       add_header Cache-Control \"no-cache, no-store, must-revalidate\";\n\
             \x20       empty_gif;\n\
             \x20   }}\n\n\
             \x20   # tp2: POST payload_data bodies, with CORS for browser trackers.\n\
             \x20   location = /com.snowplowanalytics.snowplow/tp2 {{\n\
             \x20       if ($request_method = OPTIONS) {{\n\
             \x20           add_header Access-Control-Allow-Origin $http_origin always;\n\
             \x20           add_header Access-Control-Allow-Credentials true always;\n\
             \x20           add_header Access-Control-Allow-Headers \"Content-Type, SP-Anonymous\" always;\n\
             \x20           add_header Access-Control-Max-Age 86400 always;\n\
             \x20           return 204;\n\
             \x20       }}\n\
             \x20       # mirror reads the body before the content phase, filling $request_body.\n\
             \x20       mirror /_plowline_read_body;\n\
             \x20       # empty_gif answers GET; a POST gets 405 from it, turned into 200 ok here.\n\
             \x20       error_page 405 =200 @plowline_tp2_ok;\n\
             \x20       empty_gif;\n\
             \x20   }}\n\
             \x20   location = /_plowline_read_body {{\n\
             \x20       internal;\n\
             \x20       access_log off;\n\
             \x20       return 204;\n\
             \x20   }}\n\
             \x20   location @plowline_tp2_ok {{\n\
             \x20       add_header Access-Control-Allow-Origin $http_origin always;\n\
             \x20       add_header Access-Control-Allow-Credentials true always;\n\
             \x20       default_type text/plain;\n\
             \x20       return 200 \"ok\";\n\
             \x20   }}\n\n\
             \x20   location = /health {{\n\
             \x20       access_log off;\n\
             \x20       userid off;\n\
             \x20       default_type text/plain;\n\
             \x20       return 200 \"OK\\n\";\n\
             \x20   }}\n\n\
             \x20   location / {{\n\
             \x20       return 404;\n\
             \x20   }}\n\
             }}\n"
        );
    }
}

/// An example `logrotate` config for the access log. `plow-shipper` follows renamed files to their
/// end and reads gzip-compressed rotated files, so plain rename-and-reopen is the safe choice;
/// `delaycompress` keeps the newest rotated file uncompressed for a cycle so nothing is compressed
/// while nginx may still write to it.
pub fn render_logrotate(access_log: &str) -> String {
    format!(
        "# logrotate config for the plowline tracker access log, rendered by\n\
         # `plow-collector nginx-conf --logrotate`. Install as /etc/logrotate.d/plowline-tracker.\n\
         {access_log} {{\n\
         \x20   daily\n\
         \x20   rotate 14\n\
         \x20   maxsize 1G\n\
         \x20   missingok\n\
         \x20   notifempty\n\
         \x20   compress\n\
         \x20   delaycompress\n\
         \x20   create 0640 www-data adm\n\
         \x20   sharedscripts\n\
         \x20   postrotate\n\
         \x20       # nginx reopens its logs on USR1; lines already written stay in the renamed file.\n\
         \x20       [ ! -f /run/nginx.pid ] || kill -USR1 \"$(cat /run/nginx.pid)\"\n\
         \x20   endscript\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_keeps_every_path_under_the_prefix() {
        let conf = EndpointConfig {
            listen: "127.0.0.1:8080".into(),
            access_log: "/srv/p/access.log".into(),
            ..EndpointConfig::default()
        }
        .render_standalone(&Standalone {
            prefix: "/srv/p/".into(),
        });
        for directive in ["pid", "error_log", "_temp_path"] {
            for line in conf.lines().filter(|l| l.contains(directive)) {
                assert!(line.contains("/srv/p/"), "{line}");
                assert!(!line.contains("/srv/p//"), "{line}");
            }
        }
        assert!(conf.contains("listen 127.0.0.1:8080;"));
        assert!(conf.contains("log_format plowline"));
    }

    #[test]
    fn cookie_domain_is_rendered() {
        let conf = EndpointConfig {
            cookie_domain: Some(".example.com".into()),
            cookie_name: "plow".into(),
            ..EndpointConfig::default()
        }
        .render_http_snippet();
        assert!(conf.contains("userid_domain .example.com;"));
        assert!(conf.contains("userid_name plow;"));
    }
}
