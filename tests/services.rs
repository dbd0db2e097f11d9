//! The real-service harness works: the broker started by `scripts/services.sh` takes produce,
//! consumer-group and commit requests from librdkafka, ClickHouse answers queries, and nginx serves
//! the tracker endpoint. These run under `scripts/test.sh`, which starts the services and exports
//! their addresses; run alone, they fail with what to do.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, or start the services with \
             `scripts/services.sh start DIR` and `source DIR/env`"
        )
    })
}

/// A minimal HTTP/1.1 GET on loopback, returning (status, body).
fn http_get(base: &str, path_and_query: &str) -> (u16, String) {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn clickhouse_answers_queries() {
    let url = env("PLOWLINE_CLICKHOUSE_URL");
    let (status, body) = http_get(&url, "/?query=SELECT%201%2B1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains('2'), "{body}");
}

#[test]
fn nginx_serves_the_tracker_endpoint() {
    let url = env("PLOWLINE_NGINX_URL");
    let (status, _) = http_get(&url, "/i?e=pv&aid=harness");
    assert_eq!(status, 200);
    let (status, body) = http_get(&url, "/health");
    assert_eq!((status, body.as_str()), (200, "OK\n"));
}

#[tokio::test]
async fn kafka_broker_takes_produce_and_consumer_group_commits() {
    let brokers = env("PLOWLINE_KAFKA_BROKERS");
    let topic = format!("harness-check-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10)))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let total = 100;
    for i in 0..total {
        let value = format!("line {i}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&format!("k{i}"))
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e}"));
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < total {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("the broker delivered every message within 60 s")
            .unwrap();
        let value = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .to_owned();
        seen.insert(value);
        consumer.commit_message(&message, CommitMode::Sync).unwrap();
    }
    assert_eq!(seen.len(), total);
    let committed = consumer
        .committed(Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .sum::<i64>();
    assert_eq!(
        committed, total as i64,
        "committed offsets cover every message"
    );
}
