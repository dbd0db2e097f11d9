//! The dashboards' ClickHouse questions (`dashboards/clickhouse/*.sql`) against the real
//! ClickHouse (`PLOWLINE_CLICKHOUSE_URL`, 18.16 here): a database of this test's own gets the
//! shipped schema through the library, tracker lines go through the real pipeline (user agent,
//! referer, campaign and geo enrichments, geo from a demo MaxMind DB of
//! `tests/tracker-client/geo-demo.json`) and the real loader (`run_file` with the ClickHouse
//! sink, events and bad rows in one input); then every SQL file runs with `plowline.` rewritten
//! to the test's database, and must return rows — with the key numbers equal to what was
//! generated.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use plowline_processor::config::Config;
use plowline_processor::enrichments::geo::writer::{city_database, Place};
use plowline_processor::output::json::write_json_event;
use plowline_processor::pipeline::{process_line, Context};
use plowline_processor::sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use plowline_processor::sinks::config::BatchLimits;
use plowline_processor::sinks::runner::{run_file, LoaderMetrics};
use serde_json::Value;

fn clickhouse_url() -> String {
    std::env::var("PLOWLINE_CLICKHOUSE_URL").unwrap_or_else(|_| {
        panic!(
            "PLOWLINE_CLICKHOUSE_URL is not set: run the tests with scripts/test.sh, or start the \
             services with `scripts/services.sh start DIR` and `source DIR/env`"
        )
    })
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `sql` over ClickHouse's HTTP interface (HTTP/1.0: no chunked answer): the body, or the
/// server's error.
fn query(url: &str, sql: &str) -> Result<String, String> {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority)
        .map_err(|e| format!("ClickHouse at {url} is unreachable: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
        Ok(body.to_owned())
    } else {
        Err(format!(
            "{}: {body}",
            head.lines().next().unwrap_or_default()
        ))
    }
}

/// The test's database, dropped when the test ends (passing or not).
struct Database {
    url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = query(&self.url, &format!("DROP DATABASE IF EXISTS {}", self.name)) {
            eprintln!("cannot drop {}: {e}", self.name);
        }
    }
}

/// A query's rows (`FORMAT JSON`), as objects.
fn rows(url: &str, sql: &str) -> Vec<Value> {
    let body = query(
        url,
        &format!("{}\nFORMAT JSON", sql.trim().trim_end_matches(';')),
    )
    .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    answer["data"].as_array().cloned().unwrap_or_default()
}

/// A numeric cell (64-bit integers come quoted in ClickHouse's JSON).
fn number(row: &Value, column: &str) -> f64 {
    match &row[column] {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{column} = {s:?} is not a number")),
        other => panic!("{column} = {other} is not a number"),
    }
}

fn sum(rows: &[Value], column: &str) -> f64 {
    rows.iter().map(|r| number(r, column)).sum()
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
];

const PAGES: [(&str, &str); 4] = [
    ("/", "Home"),
    ("/boots/chelsea", "Chelsea boots"),
    ("/boots/derby", "Derby boots"),
    ("/sale", "Sale"),
];

const REFERERS: [&str; 4] = [
    "https://www.google.com/search?q=boots",
    "https://www.facebook.com/",
    "https://shop.example.com/",
    "",
];

/// What was generated, to check the dashboards' numbers against.
#[derive(Debug, Default)]
struct Generated {
    lines: Vec<String>,
    page_views: u64,
    page_views_by_path: BTreeMap<String, u64>,
    campaign_events: u64,
    struct_events: u64,
    struct_value: f64,
    unstruct_events: u64,
    countries: BTreeSet<String>,
}

/// Tracker lines in the canonical log format, made from the golden page-view line: page views
/// (pages, referers, some with a utm campaign), structured and self-describing events, from
/// several user agents and visitors, each from an address of `places`; all in the last hours.
fn tracker_lines(places: &[Place], now_ms: i64) -> Generated {
    let golden = std::fs::read_to_string(repo("processor/test_data/ok/page_view.log")).unwrap();
    let template: Vec<&str> = golden.lines().next().unwrap().split('\t').collect();
    let mut generated = Generated::default();
    for i in 0..120_usize {
        let place = &places[i % places.len()];
        let ip = place.ips[i % place.ips.len()];
        let visitor = i % 17;
        let tstamp = now_ms - (i as i64) * 97_000;
        let (path, title) = PAGES[i % PAGES.len()];
        let mut url = format!("https://shop.example.com{path}");
        let campaign = i % 5 == 0;
        if campaign {
            url.push_str("?utm_source=news&utm_medium=email&utm_campaign=winter");
        }
        let common = format!(
            "eid=0da5b0a2-0000-4000-8000-{i:012x}&tv=js-3.17.0&tna=sp1&aid=shop&p=web\
             &duid=0da5b0a2-0000-4000-9000-{visitor:012x}&sid=0da5b0a2-0000-4000-a000-{:012x}\
             &vid=1&dtm={tstamp}&stm={tstamp}&url={}&page={}",
            visitor * 3 + i % 2,
            encode(&url),
            encode(title),
        );
        let event = match i % 6 {
            0..=3 => {
                let referer = REFERERS[i % REFERERS.len()];
                generated.page_views += 1;
                *generated
                    .page_views_by_path
                    .entry(path.to_owned())
                    .or_default() += 1;
                if campaign {
                    generated.campaign_events += 1;
                }
                format!("e=pv&refr={}", encode(referer))
            }
            4 => {
                generated.struct_events += 1;
                generated.struct_value += 19.5;
                if campaign {
                    generated.campaign_events += 1;
                }
                "e=se&se_ca=shop&se_ac=add-to-basket&se_la=BOOT&se_va=19.5".to_owned()
            }
            _ => {
                generated.unstruct_events += 1;
                if campaign {
                    generated.campaign_events += 1;
                }
                let ue = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/button_click/jsonschema/1-0-0","data":{"id":"buy-now"}}}"#;
                format!("e=ue&ue_pr={}", encode(ue))
            }
        };
        generated.countries.insert(place.iso_code.clone());
        let mut fields: Vec<String> = template.iter().map(|f| (*f).to_owned()).collect();
        fields[0] = format!("{}.{:03}", tstamp / 1000, tstamp % 1000);
        fields[2] = ip.to_string();
        fields[5] = format!("/i?{event}&{common}");
        fields[8] = USER_AGENTS[i % USER_AGENTS.len()].to_owned();
        generated.lines.push(fields.join("\t"));
    }
    // Malformed hits: a broken tracker protocol, a path that is no tracker's, a garbled line.
    let mut fields: Vec<String> = template.iter().map(|f| (*f).to_owned()).collect();
    fields[0] = format!("{}.000", now_ms / 1000);
    for uri in ["/i?e=zz&eid=not-a-uuid&p=moon", "/favicon.ico"] {
        fields[5] = uri.to_owned();
        generated.lines.push(fields.join("\t"));
    }
    generated.lines.push("this is not a log line".to_owned());
    generated
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_answers_with_the_numbers_generated() {
    let url = clickhouse_url();
    if let Err(e) = query(&url, "SELECT 1") {
        panic!("ClickHouse at {url} does not answer: {e}");
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let database = Database {
        url: url.clone(),
        name: format!("plowline_dashboards_{}_{}", std::process::id(), now_ms),
    };
    let dir = std::env::temp_dir().join(&database.name);
    std::fs::create_dir_all(&dir).unwrap();

    // The pipeline, with the demo geo database.
    let demo: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/tracker-client/geo-demo.json")).unwrap(),
    )
    .unwrap();
    let places: Vec<Place> = serde_json::from_value(demo["countries"].clone()).unwrap();
    let geo_db = dir.join("demo-city.mmdb");
    std::fs::write(&geo_db, city_database(&places)).unwrap();
    let processor_toml = dir.join("processor.toml");
    std::fs::write(
        &processor_toml,
        format!(
            "[enrichments.referer]\ninternal_domains = [\"shop.example.com\"]\n\
             [enrichments.geo]\ndatabase = \"{}\"\n",
            geo_db.display()
        ),
    )
    .unwrap();
    let config = Config::load(&processor_toml).unwrap().validate().unwrap();
    let ctx = Context {
        format: &config.log_format,
        max_line_bytes: config.max_line_bytes,
        etl_tstamp_ms: now_ms,
        enrich: &config.enrichments,
    };
    let generated = tracker_lines(&places, now_ms);
    let mut input = Vec::new();
    let mut events = 0_u64;
    let mut bad_by_type: BTreeMap<String, u64> = BTreeMap::new();
    for line in &generated.lines {
        let outcome = process_line(line.as_bytes(), &ctx);
        for event in &outcome.events {
            write_json_event(event, &mut input);
            input.push(b'\n');
            events += 1;
        }
        for row in &outcome.bad_rows {
            *bad_by_type.entry(row.kind.name().to_owned()).or_default() += 1;
            row.write_line(&mut input);
        }
    }
    assert_eq!(events, 120, "every generated hit is an event");
    assert!(bad_by_type.len() >= 3, "{bad_by_type:?}");

    // The real loader: the schema through the library (create_schema), then events and bad
    // rows from one input.
    let clickhouse = ClickHouseConfig {
        url: url.clone(),
        database: database.name.clone(),
        create_schema: true,
        ..ClickHouseConfig::default()
    };
    clickhouse.validate().unwrap();
    let metrics = LoaderMetrics::new("clickhouse");
    let sink = ClickHouseSink::new(&clickhouse, Arc::clone(&metrics.write_retries));
    let limits = BatchLimits {
        max_events: 50,
        max_bytes: 1 << 20,
        max_wait: Duration::from_secs(1),
    };
    let mut bad_out = Vec::new();
    let summary = run_file(
        sink,
        input.as_slice(),
        &mut bad_out,
        limits,
        &metrics,
        |_, _| {},
    )
    .await
    .unwrap();
    let bad_rows: u64 = bad_by_type.values().sum();
    assert_eq!(summary.written, events + bad_rows, "{summary}");
    assert_eq!(summary.bad_rows_loaded, bad_rows, "{summary}");
    assert!(bad_out.is_empty(), "{}", String::from_utf8_lossy(&bad_out));

    // Every dashboard question.
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("dashboards/clickhouse"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    let mut answers = BTreeMap::new();
    for file in &files {
        let sql = std::fs::read_to_string(file)
            .unwrap()
            .replace("plowline.", &format!("{}.", database.name));
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let answer = rows(&url, &sql);
        assert!(!answer.is_empty(), "{name}: no rows");
        answers.insert(name, answer);
    }

    // The key numbers.
    let pv = generated.page_views as f64;
    let top_pages = &answers["top_pages"];
    assert_eq!(sum(top_pages, "page_views"), pv, "{top_pages:?}");
    for row in top_pages {
        let path = row["page_urlpath"].as_str().unwrap();
        assert_eq!(
            number(row, "page_views"),
            generated.page_views_by_path[path] as f64,
            "{path}"
        );
    }
    assert_eq!(sum(&answers["page_views_hourly"], "page_views"), pv);
    let headline = &answers["visitors_and_sessions"][0];
    assert_eq!(number(headline, "events"), events as f64);
    assert_eq!(number(headline, "page_views"), pv);
    assert_eq!(number(headline, "unique_visitors"), 17.0);
    assert_eq!(sum(&answers["events_over_time"], "events"), events as f64);
    let structured = &answers["structured_events"];
    assert_eq!(sum(structured, "events"), generated.struct_events as f64);
    assert!((sum(structured, "total_value") - generated.struct_value).abs() < 1e-6);
    let unstruct = &answers["self_describing_events"];
    assert_eq!(sum(unstruct, "events"), generated.unstruct_events as f64);
    assert_eq!(unstruct[0]["event_name"], "button_click");
    let campaigns = &answers["campaigns"];
    let winter: Vec<&Value> = campaigns
        .iter()
        .filter(|r| r["mkt_campaign"] == "winter")
        .collect();
    assert_eq!(winter.len(), 1, "{campaigns:?}");
    assert_eq!(
        number(winter[0], "events"),
        generated.campaign_events as f64
    );
    let referrers = &answers["top_referrers"];
    let mediums: BTreeSet<&str> = referrers
        .iter()
        .filter_map(|r| r["refr_medium"].as_str())
        .collect();
    assert!(
        mediums.contains("search") && mediums.contains("social"),
        "{referrers:?}"
    );
    assert!(!mediums.contains("internal"), "{referrers:?}");
    let countries: BTreeSet<String> = answers["visitors_by_location"]
        .iter()
        .map(|r| r["geo_country"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(countries, generated.countries);
    let browsers: BTreeSet<&str> = answers["technology"]
        .iter()
        .filter_map(|r| r["br_family"].as_str())
        .collect();
    assert!(browsers.len() >= 3, "{browsers:?}");
    let devices: BTreeSet<&str> = answers["mobile_vs_desktop"]
        .iter()
        .filter_map(|r| r["device"].as_str())
        .collect();
    assert!(
        devices.contains("mobile") && devices.contains("desktop"),
        "{devices:?}"
    );
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for row in &answers["bad_rows_by_type"] {
        *by_type
            .entry(row["type"].as_str().unwrap().to_owned())
            .or_default() += number(row, "bad_rows") as u64;
    }
    assert_eq!(by_type, bad_by_type);

    let _ = std::fs::remove_dir_all(&dir);
}
