//! A real Snowplow tracker (`@snowplow/node-tracker`, GET, with and without base64) sends every
//! event type to a real nginx running our standalone config; every line nginx logs must parse back
//! into exactly the parameters the tracker sent, and decode into a valid raw event.
//!
//! Needs nginx, node and npm (the tracker client's packages are installed on first run).

mod support;

use std::collections::BTreeMap;

use plowline_collector::logformat::LogFormat;
use plowline_collector::tracker::{parse_query, RawEvent};
use plowline_collector::uid::Uid;
use serde_json::Value;

#[test]
fn every_logged_hit_parses_back_to_what_the_tracker_sent() {
    let nginx = support::start_nginx("real_tracker");
    let expected = support::send_with_real_tracker(nginx.addr, &nginx.dir);
    let by_eid: BTreeMap<&str, &Value> = expected
        .iter()
        .map(|e| (e["eid"].as_str().unwrap(), e))
        .collect();

    let lines = support::read_log_lines(&nginx.access_log, expected.len());
    assert_eq!(lines.len(), expected.len(), "one log line per hit");

    let format = LogFormat::canonical();
    // (case, base64) -> decoded unstruct event and contexts, to compare the two encodings.
    let mut decoded: BTreeMap<(String, bool), (Option<Value>, Vec<Value>)> = BTreeMap::new();
    let mut event_types = std::collections::BTreeSet::new();
    for line in &lines {
        let shown = String::from_utf8_lossy(line);
        let record = format
            .parse(line)
            .unwrap_or_else(|e| panic!("{e}\nline: {shown}"));
        let hit = record
            .hit()
            .unwrap_or_else(|e| panic!("{e}\nline: {shown}"));
        let params = parse_query(hit.query().expect("a GET hit has a query string"));
        assert!(params.duplicates().is_empty(), "{shown}");
        let got: BTreeMap<String, String> = params
            .iter()
            .map(|p| {
                assert!(!p.invalid_utf8(), "{}: {shown}", p.key);
                (p.key.to_string(), p.value().to_string())
            })
            .collect();

        let eid = got.get("eid").expect("every hit has an eid");
        let sent = by_eid
            .get(eid.as_str())
            .unwrap_or_else(|| panic!("no expectation for eid {eid}"));
        let case = sent["case"].as_str().unwrap();
        let want: BTreeMap<String, String> =
            serde_json::from_value(sent["params"].clone()).unwrap();
        assert_eq!(got, want, "case {case}: parameters differ");
        assert_eq!(
            &*hit.uri,
            sent["request_uri"].as_str().unwrap().as_bytes(),
            "case {case}: $request_uri is the request target byte for byte"
        );
        assert_eq!(hit.method.as_ref(), b"GET");
        assert_eq!(hit.status, Some(200));
        if let Some(ua) = sent["headers"]["user-agent"].as_str() {
            assert_eq!(
                hit.user_agent.as_deref(),
                Some(ua.as_bytes()),
                "case {case}"
            );
        }
        // No valid plowline cookie was sent, so nginx set one and logged it.
        assert_eq!(hit.uid_got, None, "case {case}");
        let uid_set = hit.uid_set.as_deref().expect("a new id is set");
        let (name, _) = Uid::parse_logged(uid_set).expect("$uid_set is nginx's uid form");
        assert_eq!(name, b"sp");

        let event = RawEvent::from_params(&params)
            .unwrap_or_else(|rejected| panic!("case {case}: {rejected}"));
        assert!(
            event.warnings.is_empty(),
            "case {case}: {:?}",
            event.warnings
        );
        assert_eq!(event.event.code(), want["e"], "case {case}");
        event_types.insert(want["e"].clone());
        let base64 = sent["base64"].as_bool().unwrap();
        let unstruct = event
            .unstruct_event
            .as_ref()
            .map(|sd| serde_json::json!({"schema": sd.schema.to_string(), "data": sd.data}));
        let contexts = event
            .contexts
            .iter()
            .map(|sd| serde_json::json!({"schema": sd.schema.to_string(), "data": sd.data}))
            .collect();
        decoded.insert((case.to_owned(), base64), (unstruct, contexts));
    }

    for e in ["pv", "pp", "se", "ue", "tr", "ti"] {
        assert!(event_types.contains(e), "no {e} event was sent");
    }
    // Plain JSON and base64 decode to the same self-describing data.
    let mut compared = 0;
    for ((case, base64), value) in &decoded {
        if !base64 {
            let other = &decoded[&(case.clone(), true)];
            assert_eq!(
                value, other,
                "case {case}: plain and base64 decode differently"
            );
            compared += usize::from(value.0.is_some() || !value.1.is_empty());
        }
    }
    assert!(compared >= 5, "only {compared} cases carried JSON");
}
