//! Throughput of the access-log parser and writer on a generated corpus of Snowplow tracker hits.
//!
//! Run: `cargo bench -p plowline-collector --bench logformat`. Results go in `BENCHMARKS.md`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plowline_collector::logformat::{Escape, LogFormat};

/// Number of hits in the corpus.
const HITS: usize = 2_000;

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; \"Quoted\" Crawler/2.1; +http://crawler.example/bot)",
];

const PAGES: &[(&str, &str)] = &[
    ("products/42", "Caf%C3%A9%20Beans%20%E2%80%93%20Shop"),
    (
        "blog/2023/11/rust-parsers",
        "Writing%20fast%20parsers%20in%20Rust",
    ),
    ("checkout/cart", "Your%20cart%20(3%20items)"),
    ("", "Home%20%7C%20Example%20Shop"),
    (
        "search?q=winter+jacket&page=2",
        "Search%20results%20for%20winter%20jacket",
    ),
    ("de/produkte/gr%C3%BCner-tee", "Gr%C3%BCner%20Tee%20kaufen"),
];

const REFERERS: &[&str] = &[
    "https://www.google.com/",
    "https://shop.example.com/",
    "https://www.bing.com/search?q=example+shop",
    "https://t.co/abc123",
    "-",
];

/// The values of one hit, by nginx variable name.
struct HitValues {
    vars: Vec<(&'static str, Option<String>)>,
}

impl HitValues {
    fn get(&self, var: &str) -> Option<&[u8]> {
        self.vars
            .iter()
            .find(|(name, _)| *name == var)?
            .1
            .as_deref()
            .map(str::as_bytes)
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Snowplow JavaScript-tracker GET hit, 600–1500 bytes once logged (about 950 on average).
fn hit(rng: &mut Rng, i: usize) -> HitValues {
    let (path, title) = PAGES[rng.below(PAGES.len())];
    let url = percent_encode(&format!("https://shop.example.com/{path}"));
    let referer = rng.pick(REFERERS);
    let event = rng.pick(&["pv", "pv", "pv", "pp", "pp", "se", "ue"]);
    let mut contexts = format!(
        r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{{"id":"{}"}}}}"#,
        rng.uuid()
    );
    if rng.below(4) == 0 {
        contexts.push_str(&format!(
            r#",{{"schema":"iglu:com.acme/product/jsonschema/1-0-2","data":{{"sku":"SKU-{}","price":{}.99,"currency":"EUR"}}}}"#,
            rng.below(100_000),
            rng.below(500)
        ));
    }
    contexts.push_str("]}");
    let dtm = 1_700_000_000_000 + (i as u64) * 1_000 + rng.below(1_000) as u64;
    let mut uri = format!(
        "/i?stm={}&e={event}&url={url}&page={title}&refr={}&tv=js-3.{}.0&tna=sp1&aid=shop&p=web\
         &tz=Europe%2FBerlin&lang=de-DE&cs=UTF-8&res=1920x1080&cd=24&cookie=1&eid={}&dtm={dtm}\
         &vp=1280x{}&ds=1265x{}&vid={}&sid={}&duid={}",
        dtm + 20,
        percent_encode(referer),
        10 + rng.below(10),
        rng.uuid(),
        600 + rng.below(400),
        2_000 + rng.below(3_000),
        1 + rng.below(20),
        rng.uuid(),
        rng.uuid(),
    );
    match event {
        "pp" => uri.push_str(&format!(
            "&pp_mix=0&pp_max={}&pp_miy={}&pp_may={}",
            rng.below(100),
            rng.below(2_000),
            rng.below(4_000)
        )),
        "se" => uri.push_str("&se_ca=shop&se_ac=add-to-basket&se_la=SKU-1234&se_va=19.99"),
        "ue" => uri.push_str(&format!(
            "&ue_pr={}",
            percent_encode(
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1","data":{"targetUrl":"https://partner.example.org/"}}}"#
            )
        )),
        _ => {}
    }
    if rng.below(4) != 0 {
        uri.push_str(&format!("&co={}", percent_encode(&contexts)));
    }
    let ip = format!(
        "{}.{}.{}.{}",
        1 + rng.below(223),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    );
    let uid = format!("sp={}", rng.hex(32).to_uppercase());
    let returning = rng.below(4) != 0;
    let secs = 1_700_000_000 + i as u64;
    let vars = vec![
        ("msec", Some(format!("{secs}.{:03}", rng.below(1000)))),
        (
            "time_local",
            Some(format!(
                "14/Nov/2023:{:02}:{:02}:{:02} +0000",
                22 + (i / 3600) % 2,
                (i / 60) % 60,
                i % 60
            )),
        ),
        (
            "time_iso8601",
            Some(format!(
                "2023-11-14T22:{:02}:{:02}+00:00",
                (i / 60) % 60,
                i % 60
            )),
        ),
        ("remote_addr", Some(ip.clone())),
        ("remote_user", None),
        (
            "http_x_forwarded_for",
            (rng.below(3) == 0).then(|| format!("{ip}, 10.0.0.1")),
        ),
        ("host", Some("collector.example.com".to_owned())),
        ("request_method", Some("GET".to_owned())),
        ("request_uri", Some(uri.clone())),
        ("request", Some(format!("GET {uri} HTTP/1.1"))),
        ("status", Some("200".to_owned())),
        ("body_bytes_sent", Some("43".to_owned())),
        (
            "http_referer",
            (referer != "-").then(|| format!("https://shop.example.com/{path}")),
        ),
        ("http_user_agent", Some(rng.pick(USER_AGENTS).to_owned())),
        ("uid_got", returning.then(|| uid.clone())),
        ("uid_set", (!returning).then(|| uid.clone())),
        ("request_id", Some(rng.hex(32))),
        ("request_body", None),
    ];
    HitValues { vars }
}

/// The corpus written in `format`, one line per hit.
fn corpus(format: &LogFormat, hits: &[HitValues]) -> Vec<Vec<u8>> {
    hits.iter()
        .map(|hit| {
            let mut line = Vec::new();
            format.write_line(|var| hit.get(var), &mut line);
            line
        })
        .collect()
}

fn bytes(lines: &[Vec<u8>]) -> u64 {
    lines.iter().map(|l| l.len() as u64).sum()
}

fn parse_benches(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let hits: Vec<HitValues> = (0..HITS).map(|i| hit(&mut rng, i)).collect();
    let json = LogFormat::compile(
        r#"{"time":"$time_iso8601","ip":"$remote_addr","xff":"$http_x_forwarded_for","host":"$host","request":"$request","status":$status,"referer":"$http_referer","ua":"$http_user_agent","uid":"$uid_got","rid":"$request_id"}"#,
        Escape::Json,
    )
    .unwrap();
    let formats = [
        ("canonical", LogFormat::canonical()),
        ("combined", LogFormat::combined()),
        ("json", json),
    ];

    let mut group = c.benchmark_group("logformat");
    for (name, format) in &formats {
        let lines = corpus(format, &hits);
        let min = lines.iter().map(Vec::len).min().unwrap_or_default();
        let max = lines.iter().map(Vec::len).max().unwrap_or_default();
        eprintln!(
            "{name}: {} lines, {} bytes, {min}–{max} bytes per line",
            lines.len(),
            bytes(&lines)
        );
        if std::env::var_os("LOGFORMAT_BENCH_SHOW").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&lines[0]));
        }
        group.throughput(Throughput::Bytes(bytes(&lines)));
        group.bench_function(format!("{name}/parse"), |b| {
            b.iter(|| {
                for line in &lines {
                    black_box(format.parse(black_box(line)).unwrap());
                }
            })
        });
        group.bench_function(format!("{name}/parse+hit"), |b| {
            b.iter(|| {
                for line in &lines {
                    let record = format.parse(black_box(line)).unwrap();
                    black_box(record.hit().unwrap());
                }
            })
        });
    }

    let canonical = LogFormat::canonical();
    let lines = corpus(&canonical, &hits);
    group.throughput(Throughput::Bytes(bytes(&lines)));
    let mut out = Vec::with_capacity(4096);
    group.bench_function("canonical/write_line", |b| {
        b.iter(|| {
            for hit in &hits {
                out.clear();
                canonical.write_line(|var| hit.get(var), &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse_benches);
criterion_main!(benches);
