#![no_main]
//! tp1 query strings through the parameter parser and the event decoder: never a panic, keys
//! unique, and a rejected event always says why.

use libfuzzer_sys::fuzz_target;
use plowline_collector::tracker::{parse_query, RawEvent};

fuzz_target!(|data: &[u8]| {
    let params = parse_query(data);
    let keys: std::collections::HashSet<&str> = params.iter().map(|p| &*p.key).collect();
    assert_eq!(keys.len(), params.len(), "duplicate keys survived");
    match RawEvent::from_params(&params) {
        Ok(event) => {
            let _ = format!("{event:?}");
        }
        Err(rejected) => {
            assert!(!rejected.violations.is_empty());
            let _ = rejected.to_string();
        }
    }
});
