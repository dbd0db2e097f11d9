//! A real Snowplow tracker (`@snowplow/node-tracker`, GET, with and without base64) sends every
//! case of `tests/tracker-client` to a real nginx running our standalone config; the processor's
//! pipeline turns nginx's access log into enriched events, and every field is checked against what
//! the tracker sent: event types, ids, timestamps, page and referrer components, se_*, pp_*,
//! tr_*/ti_*, the flattened contexts and unstruct event, user agent and network user id.
//!
//! Needs nginx (`scripts/services.sh install`), node and npm (the tracker client's packages are
//! installed with `npm ci` on first run).

use std::collections::BTreeMap;

#[path = "../collector/tests/support/mod.rs"]
mod support;

use plowline_collector::logformat::LogFormat;
use plowline_collector::uid::Uid;
use plowline_processor::enrichments::{Enrichments, EnrichmentsConfig};
use plowline_processor::output::OutputFormat;
use plowline_processor::pipeline::{process_line, Context};
use serde_json::{Map, Value};

/// The flattened key of an Iglu URI, computed independently of the processor.
fn flat_key(prefix: &str, uri: &str) -> String {
    let parts: Vec<&str> = uri.trim_start_matches("iglu:").split('/').collect();
    let vendor = parts[0].replace(['.', '-'], "_").to_lowercase();
    let mut name = String::new();
    for (i, c) in parts[1].chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    let model = parts[3].split('-').next().unwrap();
    format!("{prefix}{vendor}_{}_{model}", name.replace('-', "_"))
}

fn ms(value: &str) -> i64 {
    value.parse().unwrap()
}

fn iso(ms: i64) -> String {
    let mut out = Vec::new();
    let event = plowline_processor::EnrichedEvent {
        collector_tstamp: ms,
        ..Default::default()
    };
    OutputFormat::Json.write_line(&event, &mut out);
    let value: Value = serde_json::from_slice(&out).unwrap();
    value["collector_tstamp"].as_str().unwrap().to_owned()
}

/// Checks one enriched event (as JSON) against the parameters the tracker sent.
fn check_event(case: &str, got: &Map<String, Value>, sent: &Value) {
    let params = sent["params"].as_object().unwrap();
    let param = |k: &str| params.get(k).and_then(Value::as_str);
    let field = |k: &str| got.get(k).cloned().unwrap_or(Value::Null);
    let text = |k: &str| got.get(k).and_then(Value::as_str).map(str::to_owned);
    let ctx = format!("case {case}: {}", Value::Object(got.clone()));

    let event = match param("e").unwrap() {
        "pv" => "page_view",
        "pp" => "page_ping",
        "se" => "struct",
        "ue" => "unstruct",
        "tr" => "transaction",
        "ti" => "transaction_item",
        other => panic!("unexpected e={other}"),
    };
    assert_eq!(text("event").as_deref(), Some(event), "{ctx}");
    assert_eq!(text("event_id").as_deref(), sent["eid"].as_str(), "{ctx}");
    assert_eq!(text("app_id").as_deref(), param("aid"), "{ctx}");
    assert_eq!(text("platform").as_deref(), param("p"), "{ctx}");
    assert_eq!(text("name_tracker").as_deref(), param("tna"), "{ctx}");
    assert_eq!(text("v_tracker").as_deref(), param("tv"), "{ctx}");
    assert_eq!(text("page_title").as_deref(), param("page"), "{ctx}");
    assert_eq!(text("page_referrer").as_deref(), param("refr"), "{ctx}");
    assert_eq!(text("user_id").as_deref(), param("uid"), "{ctx}");
    assert_eq!(text("domain_userid").as_deref(), param("duid"), "{ctx}");
    assert_eq!(text("br_lang").as_deref(), param("lang"), "{ctx}");
    assert_eq!(text("os_timezone").as_deref(), param("tz"), "{ctx}");

    // Timestamps.
    let collector = got["collector_tstamp"].as_str().unwrap();
    assert!(collector.ends_with('Z') && collector.len() == 24, "{ctx}");
    for (key, name) in [
        ("dtm", "dvce_created_tstamp"),
        ("stm", "dvce_sent_tstamp"),
        ("ttm", "true_tstamp"),
    ] {
        assert_eq!(text(name), param(key).map(|v| iso(ms(v))), "{name}: {ctx}");
    }
    if let Some(ttm) = param("ttm") {
        assert_eq!(text("derived_tstamp"), Some(iso(ms(ttm))), "{ctx}");
    }
    assert!(got.contains_key("derived_tstamp"), "{ctx}");

    // The page and the referrer, and their components.
    if let Some(url) = param("url") {
        assert_eq!(text("page_url").as_deref(), Some(url), "{ctx}");
        let scheme = url.split("://").next().unwrap();
        assert_eq!(text("page_urlscheme").as_deref(), Some(scheme), "{ctx}");
        let after = &url[scheme.len() + 3..];
        let host_end = after.find(['/', '?', '#', ':']).unwrap_or(after.len());
        assert_eq!(
            text("page_urlhost").as_deref(),
            Some(&after[..host_end]),
            "{ctx}"
        );
        let port = if scheme == "https" { 443 } else { 80 };
        assert_eq!(field("page_urlport"), Value::from(port), "{ctx}");
        let fragment = url
            .split_once('#')
            .map(|(_, f)| f)
            .filter(|f| !f.is_empty());
        assert_eq!(text("page_urlfragment").as_deref(), fragment, "{ctx}");
        let query = url
            .split('#')
            .next()
            .unwrap()
            .split_once('?')
            .map(|(_, q)| q)
            .filter(|q| !q.is_empty());
        assert_eq!(text("page_urlquery").as_deref(), query, "{ctx}");
    }
    if let Some(refr) = param("refr") {
        let after = refr.split_once("://").unwrap().1;
        let host_end = after.find(['/', '?', '#', ':']).unwrap_or(after.len());
        assert_eq!(
            text("refr_urlhost").as_deref(),
            Some(&after[..host_end]),
            "{ctx}"
        );
    }

    // Structured events, page pings, ecommerce.
    for (key, name) in [
        ("se_ca", "se_category"),
        ("se_ac", "se_action"),
        ("se_la", "se_label"),
        ("se_pr", "se_property"),
        ("tr_id", "tr_orderid"),
        ("tr_af", "tr_affiliation"),
        ("tr_ci", "tr_city"),
        ("tr_st", "tr_state"),
        ("tr_co", "tr_country"),
        ("tr_cu", "tr_currency"),
        ("ti_id", "ti_orderid"),
        ("ti_sk", "ti_sku"),
        ("ti_nm", "ti_name"),
        ("ti_ca", "ti_category"),
        ("ti_cu", "ti_currency"),
    ] {
        assert_eq!(text(name).as_deref(), param(key), "{name}: {ctx}");
    }
    for (key, name) in [
        ("se_va", "se_value"),
        ("tr_tt", "tr_total"),
        ("tr_tx", "tr_tax"),
        ("tr_sh", "tr_shipping"),
        ("ti_pr", "ti_price"),
        ("ti_qu", "ti_quantity"),
        ("pp_mix", "pp_xoffset_min"),
        ("pp_max", "pp_xoffset_max"),
        ("pp_miy", "pp_yoffset_min"),
        ("pp_may", "pp_yoffset_max"),
    ] {
        let want = param(key).map(|v| v.parse::<f64>().unwrap());
        assert_eq!(field(name).as_f64(), want, "{name}: {ctx}");
    }

    // Headers and the cookie nginx set.
    if let Some(ua) = sent["headers"]["user-agent"].as_str() {
        let want = param("ua").unwrap_or(ua);
        assert_eq!(text("useragent").as_deref(), Some(want), "{ctx}");
    }
    let nuid = text("network_userid").expect("a network user id");
    assert_eq!(nuid.len(), 36, "{ctx}");

    // Event vendor/name and the flattened unstruct event and contexts (plain JSON only here; the
    // base64 twin is compared with this one by the caller).
    if let Some(ue) = param("ue_pr") {
        let ue: Value = serde_json::from_str(ue).unwrap();
        let inner = &ue["data"];
        let schema = inner["schema"].as_str().unwrap();
        let key = flat_key("unstruct_event_", schema);
        assert_eq!(field(&key), inner["data"], "{key}: {ctx}");
        let vendor = schema
            .trim_start_matches("iglu:")
            .split('/')
            .next()
            .unwrap();
        assert_eq!(text("event_vendor").as_deref(), Some(vendor), "{ctx}");
    } else if param("ue_px").is_none() {
        assert_eq!(
            text("event_vendor").as_deref(),
            Some("com.snowplowanalytics.snowplow"),
            "{ctx}"
        );
    }
    if let Some(co) = param("co") {
        let co: Value = serde_json::from_str(co).unwrap();
        let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for entity in co["data"].as_array().unwrap() {
            let key = flat_key("contexts_", entity["schema"].as_str().unwrap());
            want.entry(key).or_default().push(entity["data"].clone());
        }
        for (key, data) in want {
            assert_eq!(field(&key), Value::Array(data), "{key}: {ctx}");
        }
    }
    assert!(!got.contains_key("contexts") && !got.contains_key("unstruct_event"));
}

#[test]
fn hits_from_a_real_tracker_through_nginx_enrich_with_every_field_right() {
    let nginx = support::start_nginx("enrich_real_tracker");
    let expected = support::send_with_real_tracker(nginx.addr, &nginx.dir);
    let by_eid: BTreeMap<&str, &Value> = expected
        .iter()
        .map(|e| (e["eid"].as_str().unwrap(), e))
        .collect();
    let lines = support::read_log_lines(&nginx.access_log, expected.len());
    assert_eq!(lines.len(), expected.len(), "one log line per hit");

    let format = LogFormat::canonical();
    // The default enrichments, with their built-in data (no database files).
    let enrichments = Enrichments::new(&EnrichmentsConfig::default()).unwrap();
    let ctx = Context {
        format: &format,
        max_line_bytes: 1 << 20,
        etl_tstamp_ms: 1_800_000_000_000,
        enrich: &enrichments,
    };
    // (case, base64) → the event without the fields that differ between the two sends.
    let mut by_case: BTreeMap<(String, bool), Map<String, Value>> = BTreeMap::new();
    let mut event_types = std::collections::BTreeSet::new();
    for line in &lines {
        let outcome = process_line(line, &ctx);
        let shown = String::from_utf8_lossy(line);
        assert!(
            outcome.bad_rows.is_empty(),
            "{:?}\nline: {shown}",
            outcome.bad_rows
        );
        assert_eq!(outcome.events.len(), 1, "{shown}");
        let mut out = Vec::new();
        OutputFormat::Json.write_line(&outcome.events[0], &mut out);
        let got: Map<String, Value> = serde_json::from_slice(&out).unwrap();
        let eid = got["event_id"].as_str().unwrap();
        let sent = by_eid[eid];
        let case = sent["case"].as_str().unwrap();
        check_event(case, &got, sent);

        // The cookie nginx set, as a UUID.
        let record = format.parse(line).unwrap();
        let hit = record.hit().unwrap();
        let (_, uid) = Uid::parse_logged(hit.uid_set.as_deref().unwrap()).unwrap();
        let params = &sent["params"];
        let want = params["tnuid"]
            .as_str()
            .or(params["nuid"].as_str())
            .map_or_else(|| uid.to_uuid_string(), str::to_owned);
        assert_eq!(got["network_userid"], want.as_str(), "case {case}");

        event_types.insert(got["event"].as_str().unwrap().to_owned());
        let mut comparable = got.clone();
        for volatile in [
            "event_id",
            "collector_tstamp",
            "dvce_created_tstamp",
            "dvce_sent_tstamp",
            "derived_tstamp",
            "network_userid",
            "domain_userid",
            "domain_sessionid",
            "domain_sessionidx",
            // A case sent twice with a fixed timestamp (plain, then base64) is the same event by
            // its fingerprint, so the second send is flagged as a duplicate of the first.
            "contexts_com_plowline_duplicate_1",
            "event_fingerprint",
        ] {
            comparable.remove(volatile);
        }
        // The enrichments ran on the real tracker's user agent and referrer.
        if got
            .get("useragent")
            .and_then(Value::as_str)
            .is_some_and(|ua| ua.contains("Chrome/124"))
        {
            assert_eq!(got["br_family"], "Chrome", "case {case}");
            assert_eq!(got["os_family"], "Linux", "case {case}");
            assert_eq!(got["dvce_ismobile"], false, "case {case}");
        }
        if case == "pv_basic" {
            assert_eq!(got["refr_medium"], "search", "case {case}");
            assert_eq!(got["refr_source"], "Google", "case {case}");
            assert_eq!(got["refr_term"], "plowline", "case {case}");
        }
        assert_eq!(
            got["event_fingerprint"].as_str().map(str::len),
            Some(64),
            "case {case}"
        );
        let base64 = sent["base64"].as_bool().unwrap();
        by_case.insert((case.to_owned(), base64), comparable);
    }
    for e in [
        "page_view",
        "page_ping",
        "struct",
        "unstruct",
        "transaction",
        "transaction_item",
    ] {
        assert!(event_types.contains(e), "no {e} event came out");
    }
    // Base64 and plain JSON give the same flattened unstruct event and contexts.
    let mut compared = 0;
    for ((case, base64), got) in &by_case {
        if *base64 {
            continue;
        }
        let twin = &by_case[&(case.clone(), true)];
        let flattened = |m: &Map<String, Value>| -> BTreeMap<String, Value> {
            m.iter()
                .filter(|(k, _)| k.starts_with("contexts_") || k.starts_with("unstruct_event_"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(
            flattened(got),
            flattened(twin),
            "case {case}: plain vs base64"
        );
        compared += usize::from(!flattened(got).is_empty());
    }
    assert!(compared >= 5, "only {compared} cases carried JSON");
}
