//! The Kafka producer: librdkafka with `acks=all` and idempotence by default, delivery reports
//! sent back to the tailer as [`Report`]s.
//!
//! Message value: the raw line without its `\n`. Key: none, so that lines spread over the
//! topic's partitions (the processor keys its output by user id; order within a file is not
//! a contract). Headers trace every message to its byte range:
//! `plowline.host`, `plowline.path`, `plowline.file` (the file identity), `plowline.offset` (the
//! line's first byte) and, for a cut line, `plowline.truncated` (its real length).

use std::sync::mpsc::Sender;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::watch::Wake;

/// Why the producer cannot be created or a message cannot be queued.
#[derive(Debug, thiserror::Error)]
pub enum KafkaClientError {
    /// librdkafka rejected the configuration.
    #[error("cannot create the Kafka producer for {brokers}: {source}")]
    Create {
        /// The bootstrap brokers.
        brokers: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A message could not be queued for another reason than a full queue.
    #[error("cannot queue a message for topic {topic}: {source}")]
    Enqueue {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

/// Which message a delivery report is about: a file's runtime key and the message's sequence
/// number in that file's in-flight queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The file's runtime key.
    pub file: u64,
    /// The message's sequence number within the file.
    pub seq: u64,
}

/// A delivery report.
#[derive(Debug)]
pub struct Report {
    /// The message.
    pub token: Token,
    /// `Err` with librdkafka's error text when the message was not stored.
    pub result: Result<(), String>,
}

/// The librdkafka client context: forwards delivery reports.
#[derive(Debug)]
pub struct Context {
    reports: Sender<Wake>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Self::DeliveryOpaque) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        // The receiver is gone only when the tailer stops; nothing to do then.
        let _ = self.reports.send(Wake::Delivery(Report {
            token: *token,
            result,
        }));
    }
}

/// One line to produce.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The line without `\n`.
    pub value: &'a [u8],
    /// Source host header.
    pub host: &'a str,
    /// Source path header.
    pub path: &'a str,
    /// File identity header.
    pub file_id: &'a str,
    /// Offset of the line's first byte.
    pub offset: u64,
    /// Real length of a cut line.
    pub truncated_from: Option<u64>,
    /// The delivery report's token.
    pub token: Token,
}

/// Whether a message was queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued; its delivery report will follow.
    Yes,
    /// librdkafka's queue is full: try again after some reports came back.
    QueueFull,
}

/// The producer.
pub struct Producer {
    inner: ThreadedProducer<Context>,
    topic: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The librdkafka properties for a config: our defaults, then the pass-through map.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("acks", &config.acks)
        .set("enable.idempotence", config.idempotence.to_string())
        .set("compression.codec", &config.compression)
        .set("linger.ms", config.linger_ms.to_string())
        // Bounded memory: the data waits in the log files, not in librdkafka's queue.
        .set(
            "queue.buffering.max.messages",
            config.max_in_flight_messages.to_string(),
        )
        .set("queue.buffering.max.kbytes", "32768");
    for (key, value) in &config.librdkafka {
        client.set(key, value);
    }
    client
}

impl Producer {
    /// Creates the producer; reports go to `reports`.
    pub fn new(config: &KafkaConfig, reports: Sender<Wake>) -> Result<Self, KafkaClientError> {
        let inner = client_config(config)
            .create_with_context(Context { reports })
            .map_err(|source| KafkaClientError::Create {
                brokers: config.brokers.clone(),
                source,
            })?;
        Ok(Self {
            inner,
            topic: config.topic.clone(),
        })
    }

    /// Queues one line.
    pub fn send(&self, msg: &Outgoing<'_>) -> Result<Queued, KafkaClientError> {
        let offset = msg.offset.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: "plowline.host",
                value: Some(msg.host),
            })
            .insert(Header {
                key: "plowline.path",
                value: Some(msg.path),
            })
            .insert(Header {
                key: "plowline.file",
                value: Some(msg.file_id),
            })
            .insert(Header {
                key: "plowline.offset",
                value: Some(&offset),
            });
        if let Some(len) = msg.truncated_from {
            headers = headers.insert(Header {
                key: "plowline.truncated",
                value: Some(&len.to_string()),
            });
        }
        let record =
            BaseRecord::<(), [u8], Box<Token>>::with_opaque_to(&self.topic, Box::new(msg.token))
                .payload(msg.value)
                .headers(headers);
        match self.inner.send(record) {
            Ok(()) => Ok(Queued::Yes),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Ok(Queued::QueueFull)
            }
            Err((source, _)) => Err(KafkaClientError::Enqueue {
                topic: self.topic.clone(),
                source,
            }),
        }
    }

    /// Waits up to `timeout` for queued messages to be delivered (or fail).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout).is_ok()
    }

    /// librdkafka's fatal error, if the producer hit one (it must then be recreated).
    pub fn fatal_error(&self) -> Option<String> {
        self.inner
            .client()
            .fatal_error()
            .map(|(code, text)| format!("{code:?}: {text}"))
    }
}
