//! `plow-processor enrich` on files: every line gives good events or bad rows, nothing is lost.

use std::path::PathBuf;
use std::process::Command;

fn test_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(name)
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

#[test]
fn enrich_writes_good_events_and_bad_rows_for_every_line() {
    let dir = std::env::temp_dir().join(format!("plow-enrich-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut input = Vec::new();
    for name in [
        "ok/page_view.log",
        "ok/tp2_post.log",
        "ok/ecommerce.log",
        "err/protocol.log",
        "err/format.log",
        "err/adapter.log",
    ] {
        input.extend(std::fs::read(test_data(name)).unwrap());
    }
    let input_path = dir.join("access.log");
    std::fs::write(&input_path, &input).unwrap();
    let lines = count_lines(&input);

    for format in ["json", "tsv"] {
        let output = dir.join(format!("events.{format}"));
        let run = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
            .args(["enrich", "--format", format, "--input"])
            .arg(&input_path)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        let good = count_lines(&std::fs::read(&output).unwrap());
        let bad_path = PathBuf::from(format!("{}.bad", output.display()));
        let bad = count_lines(&std::fs::read(&bad_path).unwrap());
        // 2 + 3 (tp2) + 2 good events; 2 + 2 + 4 bad rows.
        assert_eq!((good, bad), (7, 8), "{stderr}");
        assert!(good + bad >= lines);
        assert!(
            stderr.contains(&format!("{lines} lines, 7 events, 8 bad rows")),
            "{stderr}"
        );
        assert!(stderr.contains("adapter_failures: 4"), "{stderr}");
    }

    // stdin to stdout, bad rows to stderr.
    let run = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
        .args(["enrich", "--input", "-", "--output", "-"])
        .stdin(std::fs::File::open(&input_path).unwrap())
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(count_lines(&run.stdout), 7);
    let bad_rows = String::from_utf8_lossy(&run.stderr)
        .lines()
        .filter(|l| l.starts_with("{\"data\""))
        .count();
    assert_eq!(bad_rows, 8);

    let missing = Command::new(env!("CARGO_BIN_EXE_plow-processor"))
        .args(["enrich", "--input", "/nonexistent/x.log", "--output", "-"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}
