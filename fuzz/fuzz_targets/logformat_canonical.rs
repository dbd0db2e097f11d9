#![no_main]
//! Any bytes through the canonical log-line parser: never a panic; an error points inside the
//! line; and a line that parses has one value per variable, which survive being written back
//! (as nginx would) and parsed again -- except a value that is exactly `-` (escaped as `\x2D`,
//! which nginx never writes), as nginx writes `-` for "not set".

use libfuzzer_sys::fuzz_target;
use plowline_collector::logformat::LogFormat;

fuzz_target!(|line: &[u8]| {
    let format = LogFormat::canonical();
    let record = match format.parse(line) {
        Ok(record) => record,
        Err(error) => {
            assert!(
                error.offset().is_some_and(|offset| offset <= line.len()),
                "{error}"
            );
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(record.len(), format.variables().len());
    if let Err(error) = record.hit() {
        assert!(
            error.offset().is_some_and(|offset| offset <= line.len()),
            "{error}"
        );
    }
    let names: Vec<&str> = format.variables().collect();
    let values: Vec<_> = (0..record.len()).map(|i| record.get(i)).collect();
    let mut written = Vec::new();
    format.write_line(
        |var| values[names.iter().position(|name| *name == var).unwrap()].as_deref(),
        &mut written,
    );
    let again = format
        .parse(&written)
        .expect("a line written by write_line parses");
    for (i, value) in values.iter().enumerate() {
        let expected = value.as_deref().filter(|v| *v != b"-");
        assert_eq!(again.get(i).as_deref(), expected, "${} changed", names[i]);
    }
});
