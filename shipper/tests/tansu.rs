//! `plow-shipper run` against a real Tansu broker: every line in the topic exactly once through
//! restarts, rotations, truncation, identical heads, empty files, inode reuse and long lines.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use common::*;

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn ships_every_line_once_and_a_restart_ships_nothing_again() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("restart", 2, "tracker*.log", "");
    let log = dir.join("logs/tracker.log");
    let mut expected = lines("a", 0..5_000);
    append(&log, expected.clone());

    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    // The headers trace every message to its file and byte range.
    let content = fs::read(&log).unwrap();
    for m in &got {
        let source = m.source();
        assert_eq!(source["path"], log.display().to_string(), "{m:?}");
        assert!(source["file"].as_str().unwrap().starts_with("fp:"), "{m:?}");
        assert!(!source["host"].as_str().unwrap().is_empty(), "{m:?}");
        let start = m.offset() as usize;
        let end = start + m.value.len();
        assert_eq!(&content[start..end], m.value.as_bytes(), "{m:?}");
        assert_eq!(content[end], b'\n', "{m:?}");
    }
    shipper.stop();
    let size = fs::metadata(&log).unwrap().len();
    assert_eq!(registry_offsets(&dir)[&log.display().to_string()], size);

    // Restart with more lines: only the new ones are shipped.
    let more = lines("b", 0..1_000);
    append(&log, more.clone());
    expected.extend(more);
    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}

#[test]
fn rename_rotation_and_a_new_file_lose_nothing() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("rename", 1, "tracker*.log", "");
    let log = dir.join("logs/tracker.log");
    let rotated = dir.join("logs/tracker.log.1");
    let mut expected = lines("before", 0..2_000);
    append(&log, expected.clone());
    let shipper = Shipper::start(&dir, &config);
    assert!(wait_for(TIMEOUT, || registry_offsets(&dir)
        .values()
        .any(|&o| o > 0)));

    // logrotate: rename; nginx keeps writing to the renamed file until it reopens.
    fs::rename(&log, &rotated).unwrap();
    let late = lines("late", 0..500);
    append(&rotated, late.clone());
    expected.extend(late);
    let after = lines("after", 0..2_000);
    append(&log, after.clone());
    expected.extend(after);

    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}

#[test]
fn copytruncate_reads_on_in_the_copy() {
    // The copy (`app.log.1`) is matched too, so the shipper can finish the old content there.
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("copytruncate", 1, "app.log*", "");
    let log = dir.join("logs/app.log");
    let mut expected = lines("one", 0..3_000);
    append(&log, expected.clone());
    let shipper = Shipper::start(&dir, &config);
    assert!(wait_for(TIMEOUT, || registry_offsets(&dir)
        .values()
        .any(|&o| o > 0)));
    // Lines written just before the copy may not be read yet when the original is truncated.
    let tail = lines("tail", 0..3_000);
    append(&log, tail.clone());
    expected.extend(tail);
    fs::copy(&log, dir.join("logs/app.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    let after = lines("after", 0..1_000);
    append(&log, after.clone());
    expected.extend(after);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}

#[test]
fn truncation_without_copy_reads_the_new_content_from_the_start() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("truncate", 1, "app.log", "");
    let log = dir.join("logs/app.log");
    let mut expected = lines("old", 0..2_000);
    append(&log, expected.clone());
    let shipper = Shipper::start(&dir, &config);
    let size = fs::metadata(&log).unwrap().len();
    assert!(wait_for(TIMEOUT, || registry_offsets(&dir)
        .values()
        .any(|&o| o == size)));
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    // New content starting with the same lines: the head alone cannot tell, the size does.
    let new = lines("old", 0..100);
    append(&log, new.clone());
    expected.extend(new);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    let counts = counts(&got);
    assert_eq!(got.len(), expected.len(), "{}", shipper.log_text());
    assert!(expected.iter().all(|l| counts.contains_key(l)));
    assert!(shipper.log_text().contains("file truncated"));
    shipper.stop();
}

#[test]
fn files_with_identical_first_lines_are_both_shipped() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("identical", 1, "*.log", "");
    let same = lines("same", 0..2);
    let mut expected = Vec::new();
    for name in ["a", "b"] {
        let mut content = same.clone();
        content.extend(lines(name, 0..1_000));
        append(&dir.join(format!("logs/{name}.log")), content.clone());
        expected.extend(content);
    }
    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    let counts = counts(&got);
    assert_eq!(got.len(), expected.len(), "{}", shipper.log_text());
    assert!(same.iter().all(|l| counts[l] == 2));
    shipper.stop();
}

#[test]
fn a_file_that_starts_empty_is_shipped_as_it_grows() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("empty", 1, "*.log", "");
    let log = dir.join("logs/empty.log");
    fs::write(&log, "").unwrap();
    let shipper = Shipper::start(&dir, &config);
    std::thread::sleep(Duration::from_millis(800));
    // Smaller than the fingerprint: shipped at once.
    let mut expected = lines("small", 0..2);
    append(&log, expected.clone());
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    let file = got[0].source()["file"].as_str().unwrap().to_owned();
    assert!(file.starts_with("ino:"), "{file}");
    // Grows past the fingerprint size: the identity is upgraded, nothing shipped twice.
    let more = lines("grown", 0..1_000);
    append(&log, more.clone());
    expected.extend(more);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
    // And a restart does not ship it again.
    let shipper = Shipper::start(&dir, &config);
    std::thread::sleep(Duration::from_secs(2));
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}

#[test]
fn a_new_file_on_a_reused_inode_is_shipped_from_its_start() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("inode", 1, "*.log", "");
    let log = dir.join("logs/app.log");
    // Small files: identified by device and inode plus their bytes.
    let mut expected = lines("first", 0..3);
    append(&log, expected.clone());
    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();

    let old_ino = fs::metadata(&log).unwrap().ino();
    fs::remove_file(&log).unwrap();
    let second = lines("secnd", 0..5);
    append(&log, second.clone());
    let new_ino = fs::metadata(&log).unwrap().ino();
    eprintln!(
        "inode reused: {} ({old_ino} -> {new_ino})",
        old_ino == new_ino
    );
    expected.extend(second);
    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, expected.len(), TIMEOUT);
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}

#[test]
fn a_line_over_the_maximum_is_shipped_cut_and_marked() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("long", 1, "*.log", "max_line_bytes = 200");
    let log = dir.join("logs/app.log");
    let long = "x".repeat(100_000);
    append(&log, ["before".to_owned(), long, "after".to_owned()]);
    let shipper = Shipper::start(&dir, &config);
    let got = consume(&broker.brokers, &topic, 3, TIMEOUT);
    assert_eq!(got.len(), 3, "{}", shipper.log_text());
    assert_eq!(got[0].value, "before");
    assert_eq!(got[1].value, "x".repeat(200));
    assert_eq!(got[1].headers["plowline.truncated"], "100000");
    assert_eq!(got[1].offset(), "before\n".len() as u64);
    assert_eq!(got[2].value, "after");
    shipper.stop();
}

/// With the periodic scan slowed to a minute, a file created after the start is shipped within
/// seconds: inotify woke the shipper and asked for a scan.
#[test]
fn inotify_finds_new_files_and_lines_before_the_next_scan() {
    let Case {
        serial: _serial,
        broker,
        dir,
        topic,
        config,
    } = Case::new("inotify", 1, "tracker*.log", "");
    let slow = fs::read_to_string(&config)
        .unwrap()
        .replace("scan_interval_ms = 200", "scan_interval_ms = 60000");
    fs::write(&config, slow).unwrap();
    let shipper = Shipper::start(&dir, &config);
    // Let the first scan (of an empty directory) happen.
    std::thread::sleep(Duration::from_secs(1));
    let log = dir.join("logs/tracker.log");
    let mut expected = lines("new", 0..100);
    append(&log, expected.clone());
    let got = consume(
        &broker.brokers,
        &topic,
        expected.len(),
        Duration::from_secs(20),
    );
    assert_exactly_once(&got, &expected, &shipper.log_text());
    let more = lines("more", 0..100);
    append(&log, more.clone());
    expected.extend(more);
    let got = consume(
        &broker.brokers,
        &topic,
        expected.len(),
        Duration::from_secs(20),
    );
    assert_exactly_once(&got, &expected, &shipper.log_text());
    shipper.stop();
}
