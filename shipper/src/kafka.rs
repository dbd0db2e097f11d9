//! The Kafka producer: librdkafka with `acks=all` and idempotence by default, delivery reports
//! sent back to the tailer as [`Report`]s.
//!
//! Message value: the raw line without its `\n`. Key: none, so that lines spread over the
//! topic's partitions (the processor keys its output by user id; order within a file is not
//! a contract). Headers trace every message to its byte range:
//!
//! - `plowline.source`: where the line comes from, a JSON object
//!   `{"host":"web-1","path":"/var/log/nginx/tracker.log","file":"fp:…","offset":1234}`: the
//!   source host name, the file's path and identity ([`FileId`](crate::fingerprint::FileId)) and
//!   the offset of the line's first byte in the file.
//! - `plowline.truncated`, only on a line cut to `max_line_bytes`: its real length, in decimal.
//!
//! One header, not one per field: librdkafka allocates, serializes and frees every header of
//! every message, which costs more than the rest of the shipper's own work; four separate headers
//! cost twice as much as this one (`BENCHMARKS.md`, "Shipper (whole process)"). The part before
//! the offset is built once per file ([`source_prefix`]).

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

/// The header tracing a line to its host, file and byte offset ([`source_value`]).
pub const SOURCE_HEADER: &str = "plowline.source";
/// The header holding the real length of a cut line.
pub const TRUNCATED_HEADER: &str = "plowline.truncated";

/// The part of a file's [`SOURCE_HEADER`] values that is the same for all its lines:
/// `{"host":…,"path":…,"file":…,"offset":`.
pub fn source_prefix(host: &str, path: &str, file_id: &str) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        "{{\"host\":{},\"path\":{},\"file\":{},\"offset\":",
        string(host),
        string(path),
        string(file_id)
    )
}

/// Writes the [`SOURCE_HEADER`] value of the line at `offset` of the file with this
/// [`source_prefix`] into `out`.
pub fn source_value(prefix: &str, offset: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
    out.push(b'}');
}

/// Bits of a [`Token`] holding the file key; the others hold the sequence number.
pub const TOKEN_FILE_BITS: u32 = 24;
const TOKEN_SEQ_BITS: u32 = usize::BITS - TOKEN_FILE_BITS;
/// The largest file key a [`Token`] can carry.
pub const TOKEN_FILE_MAX: u64 = (1 << TOKEN_FILE_BITS) - 1;
const TOKEN_SEQ_MASK: u64 = (1 << TOKEN_SEQ_BITS) - 1;
// The token travels in librdkafka's per-message opaque pointer: 24 + 40 bits.
const _: () = assert!(usize::BITS == 64, "the delivery token needs a 64-bit usize");

/// Which message a delivery report is about: a file's runtime key (at most
/// [`TOKEN_FILE_MAX`]) and the message's sequence number in that file's in-flight queue. It is
/// carried in librdkafka's per-message opaque pointer, so no allocation per message; the
/// sequence number keeps its low 40 bits there ([`Token::widen_seq`] restores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The file's runtime key.
    pub file: u64,
    /// The message's sequence number within the file (its low 40 bits in a report).
    pub seq: u64,
}

impl Token {
    fn pack(self) -> usize {
        debug_assert!(self.file <= TOKEN_FILE_MAX);
        ((self.file << TOKEN_SEQ_BITS) | (self.seq & TOKEN_SEQ_MASK)) as usize
    }

    fn unpack(packed: usize) -> Self {
        let packed = packed as u64;
        Self {
            file: packed >> TOKEN_SEQ_BITS,
            seq: packed & TOKEN_SEQ_MASK,
        }
    }

    /// The full sequence number of a reported message, given the oldest sequence number still
    /// in its file's queue (the message is at most 2^40 messages after it).
    pub fn widen_seq(self, oldest: u64) -> u64 {
        oldest.wrapping_add(self.seq.wrapping_sub(oldest) & TOKEN_SEQ_MASK)
    }
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
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Self::DeliveryOpaque) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        // The receiver is gone only when the tailer stops; nothing to do then.
        let _ = self.reports.send(Wake::Delivery(Report {
            token: Token::unpack(token),
            result,
        }));
    }
}

/// One line to produce.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The line without `\n`.
    pub value: &'a [u8],
    /// The file's [`source_prefix`].
    pub source: &'a str,
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
    /// The source header value being built (librdkafka copies it).
    source: Vec<u8>,
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
            source: Vec::new(),
        })
    }

    /// Queues one line.
    pub fn send(&mut self, msg: &Outgoing<'_>) -> Result<Queued, KafkaClientError> {
        source_value(msg.source, msg.offset, &mut self.source);
        let mut headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: SOURCE_HEADER,
            value: Some(&self.source[..]),
        });
        if let Some(len) = msg.truncated_from {
            headers = headers.insert(Header {
                key: TRUNCATED_HEADER,
                value: Some(itoa::Buffer::new().format(len)),
            });
        }
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, msg.token.pack())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[kafka]` section with these librdkafka properties; nothing listens on the broker
    /// address, librdkafka only has to accept the configuration.
    fn producer_with(properties: &[(&str, &str)]) -> Result<Producer, KafkaClientError> {
        let mut section = "brokers = \"127.0.0.1:9\"\ntopic = \"t\"\n[librdkafka]\n".to_owned();
        for (key, value) in properties {
            section += &format!(
                "{} = {}\n",
                toml::Value::from(*key),
                toml::Value::from(*value)
            );
        }
        let config: KafkaConfig = toml::from_str(&section).unwrap();
        Producer::new(&config, std::sync::mpsc::channel().0)
    }

    #[test]
    fn tls_is_built_in_and_loads_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, include_str!("../tests/data/test-ca.pem")).unwrap();
        let ca = ca.to_str().unwrap();
        producer_with(&[("security.protocol", "ssl"), ("ssl.ca.location", ca)]).unwrap();

        // The CA file is really read: one that is not a certificate is refused.
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        let error = producer_with(&[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", bad.to_str().unwrap()),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("ssl.ca.location"), "{error}");
    }

    #[test]
    fn sasl_plain_and_scram_are_accepted() {
        let credentials = [("sasl.username", "shipper"), ("sasl.password", "secret")];
        for (protocol, mechanism) in [
            ("sasl_plaintext", "PLAIN"),
            ("sasl_ssl", "PLAIN"),
            ("sasl_ssl", "SCRAM-SHA-512"),
        ] {
            let mut properties = vec![
                ("security.protocol", protocol),
                ("sasl.mechanisms", mechanism),
            ];
            properties.extend(credentials);
            if let Err(error) = producer_with(&properties) {
                panic!("{protocol} with {mechanism}: {error}");
            }
        }
        // A mechanism librdkafka does not know is refused, so the above are really checked.
        let error = producer_with(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanisms", "NO-SUCH-MECHANISM"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("NO-SUCH-MECHANISM"), "{error}");
    }

    #[test]
    fn tokens_survive_the_opaque_pointer() {
        for token in [
            Token { file: 0, seq: 0 },
            Token {
                file: TOKEN_FILE_MAX,
                seq: TOKEN_SEQ_MASK,
            },
            Token {
                file: 7,
                seq: 123_456,
            },
        ] {
            assert_eq!(Token::unpack(token.pack()), token);
        }
    }

    #[test]
    fn sequence_numbers_are_widened_across_the_40_bit_wrap() {
        let oldest = (5 << TOKEN_SEQ_BITS) - 3;
        for seq in [oldest, oldest + 2, oldest + 3, oldest + 1_000] {
            let reported = Token::unpack(Token { file: 1, seq }.pack());
            assert_ne!(reported.seq, seq, "only the low bits travel");
            assert_eq!(reported.widen_seq(oldest), seq);
        }
    }

    #[test]
    fn the_source_header_is_json_of_the_four_fields() {
        let prefix = source_prefix("web-1", "/var/log/a \"b\"\n.log", "fp:00ff");
        let mut value = b"left over".to_vec();
        for offset in [0, u64::MAX] {
            source_value(&prefix, offset, &mut value);
            let parsed: serde_json::Value = serde_json::from_slice(&value).unwrap();
            assert_eq!(
                parsed,
                serde_json::json!({
                    "host": "web-1", "path": "/var/log/a \"b\"\n.log", "file": "fp:00ff",
                    "offset": offset
                })
            );
        }
    }
}
