//! Durability of `plow-shipper run` against a real Tansu broker: SIGKILL during rotations, and
//! a broker outage longer than the producer's message timeout.

mod common;

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// logrotate in one of its two modes, with `compress` and an unbounded `rotate` count: the
/// rotated files shift up (`app.log.N.gz` → `app.log.N+1.gz`), the previous `app.log.1` is
/// gzipped to `app.log.2.gz`, and the live file becomes `app.log.1` by rename (then recreated
/// by the next write) or by copy + truncate.
fn rotate(logs: &Path, copytruncate: bool) {
    let live = logs.join("app.log");
    let first = logs.join("app.log.1");
    let gz = |n: usize| logs.join(format!("app.log.{n}.gz"));
    let last = (2..).take_while(|&n| gz(n).exists()).last();
    if let Some(last) = last {
        for n in (2..=last).rev() {
            fs::rename(gz(n), gz(n + 1)).unwrap();
        }
    }
    if first.exists() {
        let content = fs::read(&first).unwrap();
        let mut out = flate2::write::GzEncoder::new(
            fs::File::create(gz(2)).unwrap(),
            flate2::Compression::fast(),
        );
        out.write_all(&content).unwrap();
        out.finish().unwrap();
        fs::remove_file(&first).unwrap();
    }
    if copytruncate {
        fs::copy(&live, &first).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&live)
            .unwrap();
    } else {
        fs::rename(&live, &first).unwrap();
    }
}

/// The line number `n=` of a line written by [`lines`].
fn line_number(line: &str) -> usize {
    let n = line.split("&n=").nth(1).expect("a line of ours");
    n[..n.find('&').unwrap_or(n.len())].parse().unwrap()
}

/// A writer appends 1,000,000 lines while logrotate-style rotations happen (rename + create and
/// copytruncate in turn, gzip of the previous rotation, every 100,000 lines) and the shipper is
/// SIGKILLed at irregular moments and restarted, six times. Every line must be in the topic at
/// least once. Duplicates are lines that were in flight, or acknowledged but not yet in the
/// registry, at a kill: they come in runs of consecutive lines, at most one run per kill for each
/// file being read then (the live file and the one just rotated).
///
/// The broker keeps the topic in memory (`memory://`): only the shipper is killed here, and
/// Tansu serves reads from memory fast enough to check a million lines in seconds.
#[test]
fn sigkill_during_rotations_loses_no_line() {
    let _serial = serial();
    let broker = Broker::in_memory();
    let dir = workdir("crash");
    let topic = unique("crash");
    broker.topic(&topic, 1);
    let config = write_config(&dir, "app.log*", &broker.brokers, &topic, "");
    let logs = dir.join("logs");
    let total = 1_000_000;
    let per_rotation = 100_000;
    let chunk = 2_000;
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for (i, start) in (0..total).step_by(chunk).enumerate() {
                append(&logs.join("app.log"), lines("crash", start..start + chunk));
                let written = start + chunk;
                if written % per_rotation == 0 && written < total {
                    rotate(&logs, (written / per_rotation) % 2 == 0);
                }
                // ~50,000 lines a second: the shipper keeps up, so kills hit it mid-stream.
                if i % 5 == 4 {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        })
    };
    let mut kills = 0;
    let mut shipper = Shipper::start(&dir, &config);
    let start = Instant::now();
    for pause_ms in [1_700, 2_900, 1_100, 3_700, 2_300, 4_100] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        shipper.kill();
        kills += 1;
        shipper = Shipper::start(&dir, &config);
    }
    writer.join().unwrap();
    eprintln!("writer done after {:?}, {kills} kills", start.elapsed());
    let got = consume(&broker.brokers, &topic, total, Duration::from_secs(300));
    let mut seen = vec![0u32; total];
    for message in &got {
        seen[line_number(&message.value)] += 1;
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let duplicated: u64 = seen.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();
    let runs = seen.windows(2).filter(|w| w[0] <= 1 && w[1] > 1).count() + usize::from(seen[0] > 1);
    eprintln!(
        "crash safety: {total} lines written, {} messages, {missing} missing, {duplicated} \
         duplicates in {runs} runs, {kills} SIGKILLs, {:?}",
        got.len(),
        start.elapsed()
    );
    let log = shipper.log_text();
    shipper.stop();
    let first_missing = seen.iter().position(|&c| c == 0);
    assert_eq!(
        missing, 0,
        "lines lost (first: n={first_missing:?}); last shipper log:\n{log}"
    );
    assert_eq!(
        got.len() as u64,
        total as u64 + duplicated,
        "messages that are not our lines"
    );
    assert!(
        runs <= 2 * kills,
        "{runs} runs of duplicates for {kills} kills"
    );
}

#[test]
fn broker_outage_longer_than_the_message_timeout_loses_nothing() {
    let _serial = serial();
    let dir = workdir("outage");
    let broker = Broker::own(&dir.join("broker"));
    let topic = unique("outage");
    broker.topic(&topic, 1);
    let config = write_config(
        &dir,
        "app.log",
        &broker.brokers,
        &topic,
        // Tansu 0.6's SQLite storage panics (`idempotent_message_check`: "more or less than one
        // row") on an idempotent produce from a producer id it knew before a restart, and then
        // fails every request: idempotence is off against it (it stays on by default).
        "#kafka\nidempotence = false\n[kafka.librdkafka]\n\"message.timeout.ms\" = \"3000\"\n",
    );
    let log = dir.join("logs/app.log");
    let mut expected = lines("up", 0..1_000);
    append(&log, expected.clone());
    let shipper = Shipper::start(&dir, &config);
    let size = fs::metadata(&log).unwrap().len();
    assert!(
        wait_for(Duration::from_secs(60), || registry_offsets(&dir)
            .values()
            .any(|&o| o == size)),
        "{}",
        shipper.log_text()
    );

    broker.stop();
    // Lines keep coming while the broker is away, for more than the message timeout.
    for i in 0..8 {
        let batch = lines("down", i * 500..(i + 1) * 500);
        append(&log, batch.clone());
        expected.extend(batch);
        std::thread::sleep(Duration::from_secs(1));
    }
    broker.restart();
    let more = lines("back", 0..500);
    append(&log, more.clone());
    expected.extend(more);

    let got = consume(
        &broker.brokers,
        &topic,
        expected.len(),
        Duration::from_secs(90),
    );
    let counts = counts(&got);
    let missing = expected.iter().filter(|l| !counts.contains_key(*l)).count();
    let duplicated: usize = counts.values().map(|c| c - 1).sum();
    let text = shipper.log_text();
    eprintln!("outage: {missing} missing, {duplicated} duplicates");
    assert_eq!(missing, 0, "lines lost; shipper log:\n{text}");
    assert!(
        text.contains("delivery failed"),
        "the timeout path was not exercised:\n{text}"
    );
    shipper.stop();
}
