//! What to do with each answer of Elasticsearch, as pure functions over status codes and bodies:
//!
//! - the whole request: 2xx → read the items; 408, 429 and 5xx → retry it all (after
//!   `Retry-After` when given); 401/403 → stop with what to check; 413 and other 4xx → stop;
//! - each item of a `_bulk` response (a 200 with `"errors": true` is a partial failure): 2xx →
//!   written; 409 `version_conflict_engine_exception` on `create` → already there, written;
//!   429 and 5xx → retried alone; any other status → rejected for its content, with the
//!   Elasticsearch `error.type: reason` (and its causes). Nothing is dropped.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use super::config::OpType;

/// What became of one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// Indexed, or (`already_present`) a `create` of an `_id` that is already indexed.
    Written {
        /// A 409 version conflict on `create`.
        already_present: bool,
    },
    /// A transient refusal (429, 5xx): send it again.
    Retry(String),
    /// Refused for its content: the reason.
    Rejected(String),
}

/// What to do after a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestResult {
    /// 2xx: read the body.
    Success,
    /// Transient: send it all again, not before `retry_after`.
    Retry {
        /// Why.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: the message says what to check.
    Fatal(String),
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    items: Vec<HashMap<String, ItemBody>>,
}

#[derive(Deserialize)]
struct ItemBody {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// `type: reason (caused by type: reason …)` of an Elasticsearch error object (or its text).
pub fn describe_error(error: &Value) -> String {
    match error {
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or("error");
            let mut text = match map.get("reason").and_then(Value::as_str) {
                Some(reason) => format!("{kind}: {reason}"),
                None => kind.to_owned(),
            };
            if let Some(cause) = map.get("caused_by") {
                text.push_str(&format!(" (caused by {})", describe_error(cause)));
            }
            text
        }
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The `error` of an error response body, described; the start of the body if it has none.
pub fn describe_body(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.get("error").is_some() => describe_error(&value["error"]),
        _ => String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_owned(),
    }
}

/// Reads a `_bulk` response of `expected` items sent with `op_type`. An unreadable response,
/// or one with a different number of items, is an error: the request is sent again (writes
/// are idempotent by `_id`).
pub fn classify_items(
    body: &[u8],
    op_type: OpType,
    expected: usize,
) -> Result<Vec<ItemResult>, String> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable _bulk response: {e}"))?;
    if response.items.len() != expected {
        return Err(format!(
            "_bulk response has {} items for {expected} documents",
            response.items.len()
        ));
    }
    let results = response
        .items
        .into_iter()
        .map(|item| {
            let Some((_, item)) = item.into_iter().next() else {
                return ItemResult::Retry("an empty item in the _bulk response".into());
            };
            classify_item(item.status, item.error.as_ref(), op_type)
        })
        .collect::<Vec<_>>();
    if !response.errors
        && results
            .iter()
            .any(|r| !matches!(r, ItemResult::Written { .. }))
    {
        // "errors": false yet an item failed: believe the items.
        tracing::debug!("_bulk response says errors: false but has failed items");
    }
    Ok(results)
}

/// One item's outcome from its status and error.
pub fn classify_item(status: u16, error: Option<&Value>, op_type: OpType) -> ItemResult {
    let describe = || {
        error.map_or_else(
            || format!("status {status} without an error"),
            |e| format!("{status} {}", describe_error(e)),
        )
    };
    match status {
        200..=299 => ItemResult::Written {
            already_present: false,
        },
        409 if op_type == OpType::Create
            && error.and_then(|e| e.get("type")).and_then(Value::as_str)
                == Some("version_conflict_engine_exception") =>
        {
            ItemResult::Written {
                already_present: true,
            }
        }
        429 | 500..=599 => ItemResult::Retry(describe()),
        _ => ItemResult::Rejected(describe()),
    }
}

/// What to do after a response of `status` from `endpoint`.
pub fn classify_request(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    endpoint: &str,
) -> RequestResult {
    match status {
        200..=299 => RequestResult::Success,
        401 => RequestResult::Fatal(format!(
            "{endpoint} answered 401 Unauthorized ({}): check api_key, or username and password, in [elasticsearch]",
            describe_body(body)
        )),
        403 => RequestResult::Fatal(format!(
            "{endpoint} answered 403 Forbidden ({}): the user needs the index privileges create_doc and \
             auto_configure (or create_index) on the target indices, and manage_index_templates / \
             manage_ilm to install the template and policy (or set install_template = false)",
            describe_body(body)
        )),
        413 => RequestResult::Fatal(format!(
            "{endpoint} answered 413 Request Entity Too Large: lower max_request_bytes in [elasticsearch] below the cluster's http.max_content_length"
        )),
        408 | 429 | 500..=599 => RequestResult::Retry {
            reason: format!("{endpoint} answered {status}: {}", describe_body(body)),
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        _ => RequestResult::Fatal(format!("{endpoint} answered {status}: {}", describe_body(body))),
    }
}

/// Exponential backoff with jitter: each wait is drawn between half and all of a ceiling that
/// doubles from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// Starts at `initial`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            ceiling: initial,
        }
    }

    /// The next wait; at least `at_least` (a `Retry-After`).
    pub fn next(&mut self, at_least: Option<Duration>) -> Duration {
        let half = self.ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        let wait = half + Duration::from_millis(jitter);
        self.ceiling = (self.ceiling * 2).min(self.max);
        wait.max(at_least.unwrap_or(Duration::ZERO))
    }

    /// After a success: start again from `initial`.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partial failure as the bulk API documents it: created, conflict, rejected execution,
    /// mapping error, and a 503 item.
    const PARTIAL: &str = r#"{
      "took": 30, "errors": true,
      "items": [
        {"create": {"_index": "tracker-events-2023.11.14", "_id": "1", "_version": 1, "result": "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": 201}},
        {"create": {"_index": "tracker-events-2023.11.14", "_id": "2", "status": 409,
                    "error": {"type": "version_conflict_engine_exception",
                              "reason": "[2]: version conflict, document already exists (current version [1])",
                              "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "shard": "0", "index": "tracker-events-2023.11.14"}}},
        {"create": {"_index": "tracker-events-2023.11.14", "_id": "3", "status": 429,
                    "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}}},
        {"create": {"_index": "tracker-events-2023.11.14", "_id": "4", "status": 400,
                    "error": {"type": "document_parsing_exception",
                              "reason": "[1:15] failed to parse field [se_value] of type [double] in document with id '4'. Preview of field's value: 'abc'",
                              "caused_by": {"type": "number_format_exception", "reason": "For input string: \"abc\""}}}},
        {"create": {"_index": "tracker-events-2023.11.14", "_id": "5", "status": 503,
                    "error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}}}
      ]
    }"#;

    #[test]
    fn each_item_of_a_partial_failure_is_classified() {
        let results = classify_items(PARTIAL.as_bytes(), OpType::Create, 5).unwrap();
        assert_eq!(
            results[0],
            ItemResult::Written {
                already_present: false
            }
        );
        assert_eq!(
            results[1],
            ItemResult::Written {
                already_present: true
            }
        );
        assert!(
            matches!(&results[2], ItemResult::Retry(r) if r.starts_with("429 es_rejected_execution_exception"))
        );
        assert_eq!(
            results[3],
            ItemResult::Rejected(
                "400 document_parsing_exception: [1:15] failed to parse field [se_value] of type [double] in document with id '4'. \
                 Preview of field's value: 'abc' (caused by number_format_exception: For input string: \"abc\")"
                    .into()
            )
        );
        assert!(
            matches!(&results[4], ItemResult::Retry(r) if r.contains("unavailable_shards_exception"))
        );
    }

    #[test]
    fn a_conflict_on_index_is_a_rejection_and_counts_must_match() {
        let results = classify_items(PARTIAL.as_bytes(), OpType::Index, 5).unwrap();
        assert!(matches!(&results[1], ItemResult::Rejected(r) if r.contains("version_conflict")));
        assert!(classify_items(PARTIAL.as_bytes(), OpType::Create, 4).is_err());
        assert!(classify_items(b"<html>", OpType::Create, 1).is_err());
        let ok = r#"{"took":1,"errors":false,"items":[{"index":{"_index":"a","_id":"1","result":"updated","status":200}}]}"#;
        assert_eq!(
            classify_items(ok.as_bytes(), OpType::Index, 1).unwrap(),
            [ItemResult::Written {
                already_present: false
            }]
        );
    }

    #[test]
    fn whole_requests() {
        let busy = br#"{"error":{"root_cause":[],"type":"es_rejected_execution_exception","reason":"rejected"},"status":429}"#;
        assert_eq!(
            classify_request(429, Some("3"), busy, "http://es:9200"),
            RequestResult::Retry {
                reason: "http://es:9200 answered 429: es_rejected_execution_exception: rejected"
                    .into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        assert!(matches!(
            classify_request(503, None, b"", "e"),
            RequestResult::Retry {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            classify_request(
                502,
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                b"bad gateway",
                "e"
            ),
            RequestResult::Retry {
                retry_after: None,
                ..
            }
        ));
        let denied = br#"{"error":{"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
        assert!(
            matches!(classify_request(401, None, denied, "e"), RequestResult::Fatal(m) if m.contains("check api_key") && m.contains("missing authentication"))
        );
        assert!(
            matches!(classify_request(403, None, b"{}", "e"), RequestResult::Fatal(m) if m.contains("create_doc"))
        );
        assert!(
            matches!(classify_request(413, None, b"", "e"), RequestResult::Fatal(m) if m.contains("max_request_bytes"))
        );
        assert!(
            matches!(classify_request(400, None, b"{\"error\":\"x\"}", "e"), RequestResult::Fatal(m) if m.ends_with("400: x"))
        );
        assert_eq!(
            classify_request(200, None, b"", "e"),
            RequestResult::Success
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_honours_retry_after() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.next(None)).collect();
        for (wait, ceiling) in waits.iter().zip([100, 200, 400, 800, 1000, 1000]) {
            assert!(
                *wait >= Duration::from_millis(ceiling / 2)
                    && *wait <= Duration::from_millis(ceiling),
                "{waits:?}"
            );
        }
        assert_eq!(
            backoff.next(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        backoff.reset();
        assert!(backoff.next(None) <= Duration::from_millis(100));
    }
}
