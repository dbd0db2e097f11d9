#![no_main]
//! tp2 POST bodies through the envelope parser, then every event through the decoder: never a
//! panic, and a rejected event always says why.

use libfuzzer_sys::fuzz_target;
use plowline_collector::tracker::{parse_tp2, RawEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(events) = parse_tp2(data) else {
        return;
    };
    assert!(!events.is_empty());
    for params in &events {
        match RawEvent::from_params(params) {
            Ok(event) => {
                let _ = format!("{event:?}");
            }
            Err(rejected) => {
                assert!(!rejected.violations.is_empty());
                let _ = rejected.to_string();
            }
        }
    }
});
