#![no_main]
//! Arbitrary format strings through the format compiler, then a line through the compiled
//! parser: never a panic. The input is an escape-mode byte, a format string, a newline and a
//! line. A format that compiles also reads back from its own spec (`Display`) and renders an
//! nginx directive.

use libfuzzer_sys::fuzz_target;
use plowline_collector::logformat::{Escape, LogFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let escape = match mode % 3 {
        0 => Escape::Default,
        1 => Escape::Json,
        _ => Escape::None,
    };
    let (source, line) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let _ = LogFormat::from_spec(source);
    let format = match LogFormat::compile(source, escape) {
        Ok(format) => format,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let spec = format.to_string();
    assert_eq!(
        LogFormat::from_spec(&spec).as_ref(),
        Ok(&format),
        "spec {spec:?}"
    );
    let _ = format.nginx_directive("fuzz");
    match format.parse(line) {
        Ok(record) => {
            assert_eq!(record.len(), format.variables().len());
            for i in 0..record.len() {
                let _ = record.get(i);
            }
            let _ = record.hit();
        }
        Err(error) => {
            assert!(
                error.offset().is_some_and(|offset| offset <= line.len()),
                "{error}"
            );
        }
    }
});
