//! The shipped nginx config: it is what `plow-collector nginx-conf` renders, real nginx accepts it,
//! and nginx and `plow-collector serve` answer the tracker endpoint the same way.

mod support;

use std::path::Path;
use std::process::Command;

use plowline_collector::logformat::LogFormat;
use plowline_collector::nginx::{render_logrotate, EndpointConfig};
use plowline_collector::uid::Uid;
use support::{header_of, nginx_bin, read_log_lines, send_raw, status_of, Running};

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Compares a shipped file with its rendering; `UPDATE_EXPECT=1` rewrites the file.
fn check_shipped(path: &str, rendered: &str) {
    let file = repo_file(path);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&file, rendered).unwrap();
    }
    let shipped = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        shipped == rendered,
        "{path} differs from what `plow-collector nginx-conf` renders; \
         re-render it with `UPDATE_EXPECT=1 cargo test -p plowline-collector --test nginx_config`"
    );
}

#[test]
fn shipped_files_are_rendered() {
    let default = EndpointConfig::default();
    check_shipped("nginx/plowline.conf", &default.render_http_snippet());
    check_shipped(
        "nginx/logrotate.conf",
        &render_logrotate(&default.access_log),
    );
    // The binary prints the same, so the README's commands reproduce the files.
    let out = support::plow_collector()
        .arg("nginx-conf")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        default.render_http_snippet()
    );
}

fn nginx_t(prefix: &Path, conf: &Path) {
    let out = Command::new(nginx_bin())
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t failed on {}:\n{}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nginx_accepts_the_shipped_snippet() {
    let dir = support::test_dir("nginx_t_snippet");
    // The shipped file, with only the access-log path moved under the test directory.
    let snippet = std::fs::read_to_string(repo_file("nginx/plowline.conf"))
        .unwrap()
        .replace(
            &EndpointConfig::default().access_log,
            &dir.join("tracker.log").display().to_string(),
        );
    std::fs::write(dir.join("plowline.conf"), snippet).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
             uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\ninclude {d}/plowline.conf;\n}}\n"
        ),
    )
    .unwrap();
    nginx_t(&dir, &dir.join("nginx.conf"));
}

#[test]
fn nginx_accepts_the_standalone_config() {
    let dir = support::test_dir("nginx_t_standalone");
    let out = support::plow_collector()
        .args([
            "nginx-conf",
            "--standalone",
            "--listen",
            "127.0.0.1:1",
            "--prefix",
        ])
        .arg(&dir)
        .arg("--access-log")
        .arg(dir.join("access.log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("nginx.conf"), &out.stdout).unwrap();
    nginx_t(&dir, &dir.join("nginx.conf"));
}

const TP2_BODY: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","url":"https://shop.example.com/é?a=1&b=\"2\"","tab":"a	b"}]}"#;

/// The endpoint's behaviour, the same for nginx and `plow-collector serve`.
fn check_endpoint(server: &Running) {
    let addr = server.addr;
    let get = |target: &str, extra: &str| {
        send_raw(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: Tracker.Example.com:8080\r\nUser-Agent: Mozilla/5.0 \"quoted\"\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        )
    };

    // nginx writes a line after answering, and its workers may reorder the lines of consecutive
    // requests: wait for each line before the next request so the log is in request order.
    let logged = |n: usize| assert_eq!(read_log_lines(&server.access_log, n).len(), n);

    // 1. A first hit: gif, a new cookie.
    let first = get(
        "/i?e=pv&url=https%3A%2F%2Fshop.example.com%2F&tv=js-3.0",
        "",
    );
    assert_eq!(status_of(&first), 200);
    assert_eq!(
        header_of(&first, "content-type").as_deref(),
        Some("image/gif")
    );
    let set_cookie = header_of(&first, "set-cookie").expect("a new visitor gets a cookie");
    assert!(set_cookie.starts_with("sp="), "{set_cookie}");
    assert!(set_cookie.contains("; expires="), "{set_cookie}");
    assert!(
        set_cookie.ends_with("; path=/; secure; samesite=none"),
        "{set_cookie}"
    );
    let cookie = set_cookie["sp=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let uid = Uid::from_cookie_value(cookie.as_bytes()).expect("the cookie is a valid uid");

    // 2. The cookie comes back: no new cookie, and the same id is logged as got.
    logged(1);
    let second = get("/ice.png?e=se&se_ca=a%09b", &format!("Cookie: other=1; sp={cookie}\r\nReferer: https://shop.example.com/p?q=1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n"));
    assert_eq!(status_of(&second), 200);
    assert_eq!(header_of(&second, "set-cookie"), None);

    // 3. tp2 POST: the body is logged byte for byte, CORS for the browser.
    logged(2);
    let post = send_raw(
        addr,
        format!(
            "POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nHost: t.example.com\r\nOrigin: https://shop.example.com\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TP2_BODY}",
            TP2_BODY.len()
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&post), 200);
    assert_eq!(
        header_of(&post, "access-control-allow-origin").as_deref(),
        Some("https://shop.example.com")
    );
    assert_eq!(
        header_of(&post, "access-control-allow-credentials").as_deref(),
        Some("true")
    );

    // 4. The CORS preflight.
    logged(3);
    let options = send_raw(addr, b"OPTIONS /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&options), 204);
    assert!(header_of(&options, "access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));

    // 5. Health is answered and not logged; unknown paths are 404 and logged.
    logged(4);
    assert_eq!(status_of(&get("/health", "")), 200);
    assert_eq!(status_of(&get("/favicon.ico", "")), 404);

    // 6. A body over the limit is refused with 413, and logged.
    let big = "x".repeat(70 * 1024);
    logged(5);
    let too_big = send_raw(addr, format!("POST /com.snowplowanalytics.snowplow/tp2 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}", big.len()).as_bytes());
    assert_eq!(status_of(&too_big), 413);

    let lines = read_log_lines(&server.access_log, 6);
    assert_eq!(lines.len(), 6, "one line per logged request: {lines:?}");
    let format = LogFormat::canonical();
    let records: Vec<_> = lines
        .iter()
        .map(|line| {
            format
                .parse(line)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
        })
        .collect();
    let field = |i: usize, name: &str| {
        records[i]
            .var(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };

    assert_eq!(
        field(0, "request_uri").as_deref(),
        Some("/i?e=pv&url=https%3A%2F%2Fshop.example.com%2F&tv=js-3.0")
    );
    assert_eq!(field(0, "request_method").as_deref(), Some("GET"));
    assert_eq!(field(0, "status").as_deref(), Some("200"));
    assert_eq!(field(0, "host").as_deref(), Some("tracker.example.com"));
    assert_eq!(
        field(0, "http_user_agent").as_deref(),
        Some("Mozilla/5.0 \"quoted\"")
    );
    assert_eq!(field(0, "remote_addr").as_deref(), Some("127.0.0.1"));
    assert_eq!(field(0, "uid_got"), None);
    assert_eq!(field(0, "uid_set"), Some(uid.logged("sp")));
    assert_eq!(field(0, "http_referer"), None);
    assert_eq!(field(0, "request_body"), None);
    assert_eq!(field(0, "request_id").map(|id| id.len()), Some(32));
    let msec: f64 = field(0, "msec").unwrap().parse().unwrap();
    assert!(msec > 1.6e9, "{msec}");

    assert_eq!(field(1, "uid_got"), Some(uid.logged("sp")));
    assert_eq!(field(1, "uid_set"), None);
    assert_eq!(
        field(1, "http_referer").as_deref(),
        Some("https://shop.example.com/p?q=1")
    );
    assert_eq!(
        field(1, "http_x_forwarded_for").as_deref(),
        Some("203.0.113.9, 10.0.0.1")
    );
    assert_eq!(
        field(1, "request_uri").as_deref(),
        Some("/ice.png?e=se&se_ca=a%09b")
    );

    assert_eq!(field(2, "request_method").as_deref(), Some("POST"));
    assert_eq!(field(2, "request_body").as_deref(), Some(TP2_BODY));
    assert_eq!(field(3, "status").as_deref(), Some("204"));
    assert_eq!(field(4, "status").as_deref(), Some("404"));
    assert_eq!(field(5, "status").as_deref(), Some("413"));
    assert_eq!(field(5, "request_body"), None);
}

#[test]
fn nginx_serves_the_endpoint() {
    check_endpoint(&support::start_nginx("endpoint_nginx"));
}

#[test]
fn plow_collector_serve_serves_the_endpoint() {
    check_endpoint(&support::start_serve("endpoint_serve"));
}
