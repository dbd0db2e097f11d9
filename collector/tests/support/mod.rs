//! Real processes for the collector's black-box tests: nginx from the rendered standalone config,
//! and `plow-collector serve`. Each test gets its own directory and free port on loopback.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `plow-collector` binary: the one Cargo built for the collector's own tests, or, for tests
/// of other packages that include this module, the workspace's (built by `cargo test --workspace`).
pub fn plow_collector() -> Command {
    let path = option_env!("CARGO_BIN_EXE_plow-collector")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/TEST → target/debug/plow-collector
            let bin = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("plow-collector");
            assert!(
                bin.is_file(),
                "{} is missing: build it with `cargo build -p plowline-collector`",
                bin.display()
            );
            bin
        });
    Command::new(path)
}

/// The nginx binary: `$PLOWLINE_NGINX_BIN`, else `nginx` on PATH or in /usr/sbin. Fails loudly with
/// what to do when nginx is not installed.
pub fn nginx_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PLOWLINE_NGINX_BIN") {
        return path.into();
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let candidate = Path::new(dir).join("nginx");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("nginx is not installed: run `scripts/services.sh install` (or apt-get install nginx)");
}

/// A fresh directory for one test under the target directory, emptied first.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process that is killed when the test ends, however it ends.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub access_log: PathBuf,
    pub dir: PathBuf,
}

impl Drop for Running {
    /// SIGTERM first: nginx's master stops its workers on TERM, while a SIGKILL would orphan them.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until_listening(running: &mut Running, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(running.addr).is_err() {
        if let Ok(Some(status)) = running.child.try_wait() {
            let error_log =
                std::fs::read_to_string(running.dir.join("error.log")).unwrap_or_default();
            panic!("{what} exited with {status} before listening; error log:\n{error_log}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {} within 20 s",
            running.addr
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Renders the standalone config with `plow-collector nginx-conf` and runs nginx from it.
pub fn start_nginx(name: &str) -> Running {
    let dir = test_dir(name);
    let port = free_port();
    let access_log = dir.join("access.log");
    let output = plow_collector()
        .args(["nginx-conf", "--standalone", "--prefix"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--access-log"])
        .arg(&access_log)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, &output.stdout).unwrap();
    let child = Command::new(nginx_bin())
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        access_log,
        dir,
    };
    wait_until_listening(&mut running, "nginx");
    running
}

/// Runs `plow-collector serve` with the same endpoint settings as [`start_nginx`].
pub fn start_serve(name: &str) -> Running {
    let dir = test_dir(name);
    let port = free_port();
    let access_log = dir.join("access.log");
    let child = plow_collector()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--access-log",
        ])
        .arg(&access_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("error.log")).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        access_log,
        dir,
    };
    wait_until_listening(&mut running, "plow-collector serve");
    running
}

/// Sends one raw HTTP/1.1 request on a new connection and returns the raw response.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// Reads the access log until it has at least `lines` lines (nginx writes after responding).
pub fn read_log_lines(path: &Path, lines: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let content = std::fs::read(path).unwrap_or_default();
        let got: Vec<Vec<u8>> = content
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if got.len() >= lines || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The value of the first header `name` in a raw HTTP response.
pub fn header_of(response: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Sends every case of the real Snowplow tracker client (`tests/tracker-client`, GET, plain and
/// base64) to `addr` and returns what it sent: one JSON object per hit with `case`, `base64`,
/// `params`, `eid`, `request_uri` and `headers`. Installs the client's pinned packages first when
/// they are missing.
pub fn send_with_real_tracker(addr: SocketAddr, dir: &Path) -> Vec<serde_json::Value> {
    let client = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/tracker-client/send.mjs").is_file())
        .expect("tests/tracker-client is in the workspace")
        .join("tests/tracker-client");
    if !client.join("node_modules/@snowplow/node-tracker").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&client)
            .status()
            .expect(
                "npm is not installed: install Node.js 20+ with npm to run the real-tracker tests",
            );
        assert!(status.success(), "npm ci in {} failed", client.display());
    }
    let expected = dir.join("expected.ndjson");
    let out = Command::new("node")
        .arg(client.join("send.mjs"))
        .args([
            "--endpoint",
            &format!("http://{addr}"),
            "--base64",
            "both",
            "--out",
        ])
        .arg(&expected)
        .output()
        .expect("node is not installed");
    assert!(
        out.status.success(),
        "the tracker client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<serde_json::Value> = std::fs::read_to_string(&expected)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(sent.len() >= 40, "the client sent only {} hits", sent.len());
    sent
}
