//! The test server over real HTTP: the documented `_bulk` responses, templates, counts, auth
//! and faults, checked with a minimal blocking client.

use std::io::{Read, Write};
use std::net::TcpStream;

use plowline_es_test_server::{Fault, Options, TestServer};
use serde_json::{json, Value};

/// Sends one request (`Connection: close`); `None` when the server closed without answering.
fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    if response.is_empty() {
        return None;
    }
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn bulk(server: &TestServer, body: &str) -> (u16, Value) {
    send(
        server,
        "POST",
        "/_bulk",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap()
}

fn item(response: &Value, i: usize) -> &Value {
    response["items"][i]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
}

#[test]
fn create_index_and_conflicts_follow_the_bulk_api() {
    let server = TestServer::start(Options::default()).unwrap();
    let (status, r) = bulk(
        &server,
        "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":1}\n{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":2}\n\
         {\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"n\":3}\n{\"index\":{\"_index\":\"a\"}}\n{\"n\":4}\n",
    );
    assert_eq!(status, 200);
    assert_eq!(r["errors"], true);
    assert_eq!(
        (item(&r, 0)["status"].clone(), item(&r, 0)["result"].clone()),
        (json!(201), json!("created"))
    );
    assert_eq!(item(&r, 1)["status"], 409);
    assert_eq!(
        item(&r, 1)["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        (
            item(&r, 2)["status"].clone(),
            item(&r, 2)["_version"].clone()
        ),
        (json!(200), json!(2))
    );
    assert_eq!(
        item(&r, 3)["_id"].as_str().unwrap().len(),
        20,
        "a generated id"
    );
    assert_eq!(server.times_indexed("1"), 2);
    assert_eq!(server.document("a", "1").unwrap(), json!({"n": 3}));

    // Searchable after a refresh.
    assert_eq!(
        send(&server, "GET", "/a/_count", &[], b"").unwrap().1["count"],
        0
    );
    send(&server, "POST", "/a/_refresh", &[], b"").unwrap();
    assert_eq!(
        send(&server, "GET", "/a*/_count", &[], b"").unwrap().1["count"],
        2
    );
    assert_eq!(
        send(&server, "GET", "/nope/_count", &[], b"").unwrap().0,
        404
    );
    let (status, doc) = send(&server, "GET", "/a/_doc/1", &[], b"").unwrap();
    assert_eq!(
        (status, doc["_version"].clone(), doc["found"].clone()),
        (200, json!(2), json!(true))
    );
}

#[test]
fn malformed_requests_are_refused_whole() {
    let server = TestServer::start(Options::default()).unwrap();
    let (status, r) = bulk(&server, "{\"index\":{\"_index\":\"a\"}}\n{}");
    assert_eq!(
        (status, r["error"]["reason"].as_str().unwrap()),
        (
            400,
            "The bulk request must be terminated by a newline [\\n]"
        )
    );
    let (status, _) = send(
        &server,
        "POST",
        "/_bulk",
        &[("Content-Type", "text/plain")],
        b"{}\n",
    )
    .unwrap();
    assert_eq!(status, 406);
    let (status, r) = bulk(&server, "{\"index\":{}}\n{}\n");
    assert_eq!(
        (status, r["error"]["type"].as_str().unwrap()),
        (400, "action_request_validation_exception")
    );
    let (status, r) = bulk(&server, "{\"index\":{\"_index\":\"Upper\"}}\n{}\n");
    assert_eq!(
        (status, item(&r, 0)["error"]["type"].as_str().unwrap()),
        (200, "invalid_index_name_exception")
    );
}

#[test]
fn templates_map_new_indices_and_gzip_bodies_are_read() {
    let server = TestServer::start(Options::default()).unwrap();
    let template = json!({
        "index_patterns": ["ev-*"],
        "template": {"mappings": {"properties": {"n": {"type": "long"}, "at": {"type": "date"}, "geo": {"type": "geo_point"}}}}
    });
    let (status, _) = send(
        &server,
        "PUT",
        "/_index_template/ev",
        &[("Content-Type", "application/json")],
        template.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200);
    let bad_setting = json!({"index_patterns": ["x-*"], "template": {"settings": {"index.mapping.total_feilds.limit": 5}}});
    let (status, r) = send(
        &server,
        "PUT",
        "/_index_template/x",
        &[],
        bad_setting.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        (status, r["error"]["type"].as_str().unwrap()),
        (400, "illegal_argument_exception")
    );

    let body = "{\"create\":{\"_index\":\"ev-1\",\"_id\":\"a\"}}\n{\"n\":\"7\",\"at\":\"2024-01-01T00:00:00Z\",\"geo\":\"1.5,2\"}\n\
                {\"create\":{\"_index\":\"ev-1\",\"_id\":\"b\"}}\n{\"n\":\"seven\"}\n\
                {\"create\":{\"_index\":\"ev-1\",\"_id\":\"c\"}}\n{\"geo\":\"91,0\"}\n\
                {\"create\":{\"_index\":\"other\",\"_id\":\"d\"}}\n{\"n\":\"seven\"}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let headers = [
        ("Content-Type", "application/x-ndjson"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, r) = send(&server, "POST", "/_bulk", &headers, &gz.finish().unwrap()).unwrap();
    assert_eq!(status, 200);
    assert_eq!(item(&r, 0)["status"], 201);
    assert_eq!(item(&r, 1)["status"], 400);
    assert_eq!(item(&r, 1)["error"]["type"], "document_parsing_exception");
    assert!(item(&r, 1)["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("field [n] of type [long]"));
    assert!(item(&r, 2)["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("[geo] of type [geo_point]"));
    assert_eq!(item(&r, 3)["status"], 201, "no template: dynamic text");
    assert_eq!(server.field_type("ev-1", "at").as_deref(), Some("date"));
    assert_eq!(server.stats().gzip_requests, 1);
}

#[test]
fn faults_credentials_and_data_streams() {
    let server = TestServer::start(Options {
        api_key: Some("k".into()),
        ..Options::default()
    })
    .unwrap();
    let (status, r) = bulk(&server, "{\"index\":{\"_index\":\"a\"}}\n{}\n");
    assert_eq!(
        (status, r["error"]["type"].as_str().unwrap()),
        (401, "security_exception")
    );
    let auth = ("Authorization", "ApiKey k");
    let post = |body: &str| {
        send(
            &server,
            "POST",
            "/_bulk",
            &[("Content-Type", "application/x-ndjson"), auth],
            body.as_bytes(),
        )
    };

    server.push_faults([
        Fault::Status {
            status: 429,
            retry_after_s: Some(3),
        },
        Fault::Reset,
        Fault::ResetAfter,
        Fault::RejectItems { fraction: 1.0 },
    ]);
    let one = "{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{}\n";
    assert_eq!(post(one).unwrap().0, 429);
    assert!(post(one).is_none(), "reset before processing");
    assert!(post(one).is_none(), "reset after processing");
    assert_eq!(server.times_indexed("1"), 1);
    let (_, r) = post(one).unwrap();
    assert_eq!(
        item(&r, 0)["error"]["type"],
        "es_rejected_execution_exception"
    );
    assert_eq!(item(&r, 0)["status"], 429);
    assert_eq!(item(&post(one).unwrap().1, 0)["status"], 409);

    let stream = json!({"index_patterns": ["logs-x"], "data_stream": {}});
    send(
        &server,
        "PUT",
        "/_index_template/logs",
        &[auth],
        stream.to_string().as_bytes(),
    )
    .unwrap();
    let (_, r) = post("{\"index\":{\"_index\":\"logs-x\"}}\n{\"@timestamp\":\"2024-01-01\"}\n{\"create\":{\"_index\":\"logs-x\"}}\n{}\n{\"create\":{\"_index\":\"logs-x\"}}\n{\"@timestamp\":\"2024-01-01\"}\n").unwrap();
    assert_eq!(item(&r, 0)["status"], 400);
    assert!(item(&r, 1)["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("@timestamp"));
    assert_eq!(item(&r, 2)["status"], 201);
    assert!(item(&r, 2)["_index"]
        .as_str()
        .unwrap()
        .starts_with(".ds-logs-x-"));
}
