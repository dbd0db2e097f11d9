//! The cluster's state and the REST endpoints: index templates, ILM policies, indices of
//! documents by `_id` with versions, `_bulk`, and the fault injection applied to `_bulk`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::http::{Request, Response};
use crate::mapping::{glob_match, DocError, Mapping};
use crate::{Fault, Stats};

/// The version `GET /` reports.
pub const VERSION: &str = "8.15.0";

/// Settings an index template may carry (after `index.`); others are refused as Elasticsearch
/// refuses unknown settings.
const KNOWN_SETTINGS: [&str; 22] = [
    "number_of_shards",
    "number_of_replicas",
    "auto_expand_replicas",
    "refresh_interval",
    "codec",
    "hidden",
    "mode",
    "lifecycle.name",
    "lifecycle.rollover_alias",
    "lifecycle.parse_origination_date",
    "mapping.total_fields.limit",
    "mapping.total_fields.ignore_dynamic_beyond_limit",
    "mapping.depth.limit",
    "mapping.nested_fields.limit",
    "mapping.nested_objects.limit",
    "mapping.field_name_length.limit",
    "mapping.ignore_malformed",
    "mapping.coerce",
    "max_result_window",
    "query.default_field",
    "translog.durability",
    "default_pipeline",
];

/// Elasticsearch's default `index.refresh_interval`.
const REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What the connection does after a request.
#[derive(Debug)]
pub enum Reply {
    /// Answer.
    Send(Response),
    /// Close the connection without answering.
    Reset,
}

#[derive(Debug)]
struct Stored {
    source: Value,
    version: u64,
    seq_no: u64,
}

#[derive(Debug)]
struct Index {
    /// The name in responses: the index, or the backing index of a data stream.
    write_name: String,
    mapping: Mapping,
    docs: HashMap<String, Stored>,
    next_seq_no: u64,
    data_stream: bool,
    /// Documents visible to search as of the last refresh.
    refreshed_count: usize,
    /// When a document was last written: an index refreshes itself a second later
    /// (`refresh_interval: 1s`).
    last_write: Instant,
}

impl Index {
    /// Documents visible to `_count`: all of them once the refresh interval passed since the
    /// last write, else those of the last refresh.
    fn searchable(&self) -> usize {
        if self.last_write.elapsed() >= REFRESH_INTERVAL {
            self.docs.len()
        } else {
            self.refreshed_count
        }
    }
}

/// Everything the server holds, behind one lock.
#[derive(Debug)]
pub struct Cluster {
    templates: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
    indices: BTreeMap<String, Index>,
    pub(crate) stats: Stats,
    pub(crate) script: VecDeque<Fault>,
    pub(crate) default_fault: Fault,
    pub(crate) rng: StdRng,
    pub(crate) api_key: Option<String>,
    pub(crate) basic_auth: Option<String>,
}

/// The wall clock in milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An Elasticsearch error response.
pub fn error(status: u16, kind: &str, reason: &str) -> Response {
    Response::json(
        status,
        &json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status
        }),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `{"index": {"mapping": {...}}}` and `"index.mapping.x"` alike into `index.`-prefixed dotted
/// keys.
fn flatten_settings(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_settings(&key, value, out);
            }
        }
        value => {
            let key = if prefix.starts_with("index.") {
                prefix.to_owned()
            } else {
                format!("index.{prefix}")
            };
            out.insert(key, value.clone());
        }
    }
}

/// Why an index name is invalid, as Elasticsearch says it.
fn invalid_index_name(name: &str) -> Option<String> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.chars().any(|c| c.is_uppercase()) {
        "must be lowercase"
    } else if name.starts_with(['_', '-', '+']) {
        "must not start with '_', '-', or '+'"
    } else if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']) {
        "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?]"
    } else if name == "." || name == ".." {
        "must not be '.' or '..'"
    } else if name.len() > 255 {
        "index name is too long"
    } else {
        return None;
    };
    Some(format!("Invalid index name [{name}], {why}"))
}

/// Replaces a gzipped body (`Content-Encoding: gzip`, accepted on every endpoint) by its
/// content; an error response when it cannot be read.
pub fn decode_body(request: &mut Request) -> Result<(), Response> {
    match request.header("content-encoding") {
        Some(enc) if enc.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            let mut decoder = flate2::read::GzDecoder::new(&request.body[..]);
            decoder.read_to_end(&mut out).map_err(|e| {
                error(
                    400,
                    "illegal_argument_exception",
                    &format!("failed to decompress the gzip body: {e}"),
                )
            })?;
            request.body = out;
            Ok(())
        }
        Some(enc) if !enc.eq_ignore_ascii_case("identity") => Err(error(
            400,
            "illegal_argument_exception",
            &format!("unsupported Content-Encoding [{enc}]"),
        )),
        _ => Ok(()),
    }
}

/// One action of a bulk request.
struct Action {
    op: String,
    index: Option<String>,
    id: Option<String>,
    source: Option<Vec<u8>>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new(rng: StdRng, api_key: Option<String>, basic_auth: Option<String>) -> Cluster {
        Cluster {
            templates: BTreeMap::new(),
            policies: BTreeMap::new(),
            indices: BTreeMap::new(),
            stats: Stats::default(),
            script: VecDeque::new(),
            default_fault: Fault::Pass,
            rng,
            api_key,
            basic_auth,
        }
    }

    /// The fault for the next `_bulk` request.
    pub fn next_fault(&mut self) -> Fault {
        self.script.pop_front().unwrap_or(self.default_fault)
    }

    /// `None` when the request carries the configured credentials (or none are configured).
    pub fn check_auth(&self, request: &Request) -> Option<Response> {
        if self.api_key.is_none() && self.basic_auth.is_none() {
            return None;
        }
        let given = request.header("authorization").unwrap_or("");
        let ok = self
            .api_key
            .as_ref()
            .is_some_and(|key| given == format!("ApiKey {key}"))
            || self
                .basic_auth
                .as_ref()
                .is_some_and(|b| given == format!("Basic {b}"));
        if ok {
            return None;
        }
        let mut response = error(
            401,
            "security_exception",
            "missing authentication credentials for REST request [/_bulk]",
        );
        response.headers.push((
            "www-authenticate",
            "Basic realm=\"security\" charset=\"UTF-8\", ApiKey".into(),
        ));
        Some(response)
    }

    /// Answers one request that is not a `_bulk` request; `None` when it is one.
    pub fn route(&mut self, request: &Request) -> Option<Response> {
        let path = percent_decode(&request.path);
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let method = request.method.as_str();
        let body = || -> Result<Value, Response> {
            serde_json::from_slice(&request.body).map_err(|e| {
                error(
                    400,
                    "x_content_parse_exception",
                    &format!("failed to parse the body: {e}"),
                )
            })
        };
        let response = match (method, parts.as_slice()) {
            ("GET" | "HEAD", []) => Response::json(
                200,
                &json!({
                    "name": "plow-es-test-server",
                    "cluster_name": "plowline-test",
                    "cluster_uuid": "plowline-test-cluster-0000",
                    "version": {"number": VERSION, "build_flavor": "default", "lucene_version": "9.11.1",
                                "minimum_wire_compatibility_version": "7.17.0",
                                "minimum_index_compatibility_version": "7.0.0"},
                    "tagline": "You Know, for Search"
                }),
            ),
            ("POST" | "PUT", ["_bulk"]) | ("POST" | "PUT", [_, "_bulk"]) => return None,
            ("PUT" | "POST", ["_index_template", name]) => match body() {
                Ok(template) => self.put_template(name, template),
                Err(response) => response,
            },
            ("GET", ["_index_template", name]) => match self.templates.get(*name) {
                Some(t) => Response::json(200, &json!({"index_templates": [{"name": name, "index_template": t}]})),
                None => error(404, "resource_not_found_exception", &format!("index template matching [{name}] not found")),
            },
            ("PUT" | "POST", ["_ilm", "policy", name]) => match body() {
                Ok(policy) if policy.pointer("/policy/phases").is_some_and(Value::is_object) => {
                    self.policies.insert((*name).to_owned(), policy["policy"].clone());
                    Response::json(200, &json!({"acknowledged": true}))
                }
                Ok(_) => error(400, "x_content_parse_exception", "[put_lifecycle_request] policy.phases is missing"),
                Err(response) => response,
            },
            ("GET", ["_ilm", "policy", name]) => match self.policies.get(*name) {
                Some(p) => Response::json(200, &json!({ *name: {"version": 1, "policy": p} })),
                None => error(404, "resource_not_found_exception", &format!("Lifecycle policy not found: {name}")),
            },
            ("GET" | "POST", [target, "_count"]) => match self.resolve(target) {
                Ok(names) => {
                    let count: usize = names.iter().map(|n| self.indices[n].searchable()).sum();
                    Response::json(200, &json!({"count": count, "_shards": shards(names.len())}))
                }
                Err(response) => response,
            },
            ("GET" | "POST", ["_refresh"]) => self.refresh("*"),
            ("GET" | "POST", [target, "_refresh"]) => self.refresh(target),
            ("GET" | "HEAD", [index, "_doc", id]) => match self.indices.get(*index) {
                Some(i) => match i.docs.get(*id) {
                    Some(doc) => Response::json(
                        200,
                        &json!({"_index": i.write_name, "_id": id, "_version": doc.version,
                                "_seq_no": doc.seq_no, "_primary_term": 1, "found": true,
                                "_source": doc.source}),
                    ),
                    None => Response::json(404, &json!({"_index": index, "_id": id, "found": false})),
                },
                None => index_not_found(index),
            },
            ("GET", [target, "_mapping"]) => match self.resolve(target) {
                Ok(names) => {
                    let out: Map<String, Value> = names
                        .iter()
                        .map(|n| (self.indices[n].write_name.clone(), json!({"mappings": self.indices[n].mapping.to_json()})))
                        .collect();
                    Response::json(200, &Value::Object(out))
                }
                Err(response) => response,
            },
            _ => error(
                405,
                "illegal_argument_exception",
                &format!("Incorrect HTTP method for uri [{}] and method [{method}], or not supported by the test server", request.path),
            ),
        };
        Some(response)
    }

    fn refresh(&mut self, target: &str) -> Response {
        match self.resolve(target) {
            Ok(names) => {
                for name in &names {
                    let index = self.indices.get_mut(name).expect("resolved");
                    index.refreshed_count = index.docs.len();
                }
                Response::json(200, &json!({"_shards": shards(names.len())}))
            }
            Err(response) => response,
        }
    }

    fn put_template(&mut self, name: &str, template: Value) -> Response {
        let patterns = match template.get("index_patterns") {
            Some(Value::String(p)) => vec![p.clone()],
            Some(Value::Array(list)) if !list.is_empty() && list.iter().all(Value::is_string) => {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            }
            _ => {
                return error(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index patterns are missing;",
                )
            }
        };
        if let Some(components) = template.get("composed_of").and_then(Value::as_array) {
            if let Some(c) = components.first() {
                return error(
                    400,
                    "invalid_index_template_exception",
                    &format!("index_template [{name}] invalid, cause [index template [{name}] specifies component templates [{c}] that do not exist]"),
                );
            }
        }
        let settings = settings_of(&template);
        for key in settings.keys() {
            let known = key.strip_prefix("index.").is_some_and(|k| {
                KNOWN_SETTINGS.contains(&k) || k.starts_with("analysis.") || k.starts_with("sort.")
            });
            if !known {
                return error(
                    400,
                    "illegal_argument_exception",
                    &format!("unknown setting [{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"),
                );
            }
        }
        if let Err(reason) =
            Mapping::from_template(template.pointer("/template/mappings"), &settings)
        {
            return error(
                400,
                "mapper_parsing_exception",
                &format!("Failed to parse mapping: {reason}"),
            );
        }
        let mut stored = template;
        stored["index_patterns"] = json!(patterns);
        self.templates.insert(name.to_owned(), stored);
        Response::json(200, &json!({"acknowledged": true}))
    }

    /// The highest-priority template whose patterns match `index`.
    fn template_for(&self, index: &str) -> Option<&Value> {
        self.templates
            .values()
            .filter(|t| {
                t["index_patterns"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .filter_map(Value::as_str)
                        .any(|p| glob_match(p, index))
                })
            })
            .max_by_key(|t| t.get("priority").and_then(Value::as_u64).unwrap_or(0))
    }

    /// Concrete index names for a comma-separated list of names and patterns.
    fn resolve(&self, target: &str) -> Result<Vec<String>, Response> {
        let mut names = Vec::new();
        for part in target.split(',') {
            if part == "_all" || part.contains('*') {
                let pattern = if part == "_all" { "*" } else { part };
                names.extend(
                    self.indices
                        .keys()
                        .filter(|n| glob_match(pattern, n))
                        .cloned(),
                );
            } else if self.indices.contains_key(part) {
                names.push(part.to_owned());
            } else {
                return Err(index_not_found(part));
            }
        }
        names.dedup();
        Ok(names)
    }

    fn create_index(&mut self, name: &str) -> Result<(), DocError> {
        if self.indices.contains_key(name) {
            return Ok(());
        }
        let template = self.template_for(name).cloned();
        let (mapping, data_stream) = match &template {
            Some(t) => (
                Mapping::from_template(t.pointer("/template/mappings"), &settings_of(t)).map_err(
                    |reason| DocError {
                        kind: "mapper_parsing_exception",
                        reason,
                        caused_by: None,
                    },
                )?,
                t.get("data_stream").is_some(),
            ),
            None => (Mapping::default(), false),
        };
        let write_name = if data_stream {
            format!(".ds-{name}-2024.01.01-000001")
        } else {
            name.to_owned()
        };
        self.indices.insert(
            name.to_owned(),
            Index {
                write_name,
                mapping,
                docs: HashMap::new(),
                next_seq_no: 0,
                data_stream,
                refreshed_count: 0,
                last_write: Instant::now(),
            },
        );
        Ok(())
    }

    /// `POST /_bulk` and `POST /<index>/_bulk`, after the fault (if any) was applied;
    /// `reject_fraction` of the items answer 429.
    pub fn bulk(&mut self, request: &Request, reject_fraction: f64) -> Response {
        let started = Instant::now();
        self.stats.bulk_requests += 1;
        let content_type = request.header("content-type").unwrap_or("");
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            media.as_str(),
            "application/x-ndjson"
                | "application/json"
                | "application/vnd.elasticsearch+x-ndjson"
                | "application/vnd.elasticsearch+json"
        ) {
            return Response::json(
                406,
                &json!({"error": format!("Content-Type header [{content_type}] is not supported"), "status": 406}),
            );
        }
        if request
            .header("content-encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        {
            self.stats.gzip_requests += 1;
        }
        let body = &request.body;
        if body.is_empty() {
            return error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            );
        }
        if body.last() != Some(&b'\n') {
            return error(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            );
        }
        let path = percent_decode(&request.path);
        let default_index = path
            .trim_matches('/')
            .strip_suffix("/_bulk")
            .map(str::to_owned);
        let actions = match parse_actions(body, default_index.as_deref()) {
            Ok(actions) => actions,
            Err(response) => return response,
        };
        let refresh = request.query.split('&').any(|p| {
            matches!(
                p,
                "refresh" | "refresh=" | "refresh=true" | "refresh=wait_for"
            )
        });
        let items: Vec<Value> = actions
            .into_iter()
            .map(|action| {
                let op = action.op.clone();
                let item = self.apply(action, reject_fraction);
                json!({ op: item })
            })
            .collect();
        if refresh {
            self.refresh("*");
        }
        let errors = items.iter().any(|i| {
            i.as_object()
                .and_then(|o| o.values().next())
                .is_some_and(|v| v.get("error").is_some())
        });
        Response::json(
            200,
            &json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": items}),
        )
    }

    fn apply(&mut self, action: Action, reject_fraction: f64) -> Value {
        let index_name = action.index.expect("checked by parse_actions");
        let id = action.id.unwrap_or_else(|| random_id(&mut self.rng));
        let item_error = |status: u16, e: &DocError, index: &str, id: &str| json!({"_index": index, "_id": id, "status": status, "error": e.to_json()});
        if reject_fraction > 0.0 && self.rng.gen::<f64>() < reject_fraction {
            self.stats.items_rejected_429 += 1;
            let e = DocError {
                kind: "es_rejected_execution_exception",
                reason: "rejected execution of coordinating operation [coordinating_and_primary_bytes=104857600, replica_bytes=0, all_bytes=104857600, coordinating_operation_bytes=2048, max_coordinating_and_primary_bytes=107374182]".into(),
                caused_by: None,
            };
            return item_error(429, &e, &index_name, &id);
        }
        if let Some(reason) = invalid_index_name(&index_name) {
            self.stats.items_failed_400 += 1;
            let e = DocError {
                kind: "invalid_index_name_exception",
                reason,
                caused_by: None,
            };
            return item_error(400, &e, &index_name, &id);
        }
        if action.op == "update" {
            self.stats.items_failed_400 += 1;
            let e = DocError {
                kind: "illegal_argument_exception",
                reason: "update is not supported by the test server".into(),
                caused_by: None,
            };
            return item_error(400, &e, &index_name, &id);
        }
        if let Err(e) = self.create_index(&index_name) {
            self.stats.items_failed_400 += 1;
            return item_error(400, &e, &index_name, &id);
        }
        let index = self.indices.get_mut(&index_name).expect("created above");
        let write_name = index.write_name.clone();
        if action.op == "delete" {
            return match index.docs.remove(&id) {
                Some(doc) => {
                    index.next_seq_no += 1;
                    json!({"_index": write_name, "_id": id, "_version": doc.version + 1, "result": "deleted",
                           "_shards": shards(1), "_seq_no": index.next_seq_no - 1, "_primary_term": 1, "status": 200})
                }
                None => {
                    json!({"_index": write_name, "_id": id, "_version": 1, "result": "not_found",
                               "_shards": shards(1), "_seq_no": index.next_seq_no, "_primary_term": 1, "status": 404})
                }
            };
        }
        if index.data_stream && action.op != "create" {
            self.stats.items_failed_400 += 1;
            let e = DocError {
                kind: "illegal_argument_exception",
                reason: "only write ops with an op_type of create are allowed in data streams"
                    .into(),
                caused_by: None,
            };
            return item_error(400, &e, &write_name, &id);
        }
        let source: Value = match serde_json::from_slice(action.source.as_deref().unwrap_or(b"")) {
            Ok(source) => source,
            Err(e) => {
                self.stats.items_failed_400 += 1;
                let e = DocError {
                    kind: "document_parsing_exception",
                    reason: format!("[{}:{}] failed to parse: {e}", e.line(), e.column()),
                    caused_by: Some(("json_parse_exception", e.to_string())),
                };
                return item_error(400, &e, &write_name, &id);
            }
        };
        if index.data_stream && source.get("@timestamp").is_none() {
            self.stats.items_failed_400 += 1;
            let e = DocError {
                kind: "document_parsing_exception",
                reason: "data stream timestamp field [@timestamp] is missing".into(),
                caused_by: None,
            };
            return item_error(400, &e, &write_name, &id);
        }
        let existing = index.docs.get(&id).map(|d| d.version);
        if action.op == "create" {
            if let Some(version) = existing {
                self.stats.items_conflicts += 1;
                let e = DocError {
                    kind: "version_conflict_engine_exception",
                    reason: format!("[{id}]: version conflict, document already exists (current version [{version}])"),
                    caused_by: None,
                };
                let mut item = item_error(409, &e, &write_name, &id);
                item["error"]["index_uuid"] = json!("plowline0test0index0uuid");
                item["error"]["shard"] = json!("0");
                item["error"]["index"] = json!(write_name);
                return item;
            }
        }
        if let Err(e) = index.mapping.index_document(&source, &id) {
            self.stats.items_failed_400 += 1;
            return item_error(400, &e, &write_name, &id);
        }
        let version = existing.map_or(1, |v| v + 1);
        let seq_no = index.next_seq_no;
        index.next_seq_no += 1;
        index.docs.insert(
            id.clone(),
            Stored {
                source,
                version,
                seq_no,
            },
        );
        *self.stats.indexed.entry(id.clone()).or_default() += 1;
        self.stats
            .first_indexed_ms
            .entry(id.clone())
            .or_insert_with(unix_ms);
        let (result, status) = if existing.is_some() {
            self.stats.items_updated += 1;
            ("updated", 200)
        } else {
            self.stats.items_created += 1;
            ("created", 201)
        };
        json!({"_index": write_name, "_id": id, "_version": version, "result": result,
               "_shards": shards(1), "_seq_no": seq_no, "_primary_term": 1, "status": status})
    }

    /// Documents in the indices matching `target` (refreshed or not).
    pub fn count(&self, target: &str) -> usize {
        self.resolve(target)
            .map(|names| names.iter().map(|n| self.indices[n].docs.len()).sum())
            .unwrap_or(0)
    }

    /// A stored document's `_source`.
    pub fn document(&self, index: &str, id: &str) -> Option<Value> {
        self.indices
            .get(index)?
            .docs
            .get(id)
            .map(|d| d.source.clone())
    }

    /// The mapped type of a field of an index.
    pub fn field_type(&self, index: &str, path: &str) -> Option<String> {
        self.indices.get(index)?.mapping.field_type(path)
    }

    /// A stored index template, as given.
    pub fn template(&self, name: &str) -> Option<Value> {
        self.templates.get(name).cloned()
    }

    /// A stored ILM policy's `policy` object.
    pub fn policy(&self, name: &str) -> Option<Value> {
        self.policies.get(name).cloned()
    }

    /// Names of the indices (and data streams).
    pub fn index_names(&self) -> Vec<String> {
        self.indices.keys().cloned().collect()
    }
}

fn settings_of(template: &Value) -> Map<String, Value> {
    let mut settings = Map::new();
    if let Some(s) = template.pointer("/template/settings") {
        flatten_settings("", s, &mut settings);
    }
    settings
}

fn shards(n: usize) -> Value {
    json!({"total": 2 * n.max(1), "successful": n.max(1), "failed": 0})
}

fn index_not_found(index: &str) -> Response {
    let mut response = error(
        404,
        "index_not_found_exception",
        &format!("no such index [{index}]"),
    );
    response.body = serde_json::to_vec(&json!({
        "error": {"root_cause": [{"type": "index_not_found_exception", "reason": format!("no such index [{index}]"),
                                  "index": index, "resource.type": "index_or_alias", "resource.id": index}],
                  "type": "index_not_found_exception", "reason": format!("no such index [{index}]"),
                  "index": index, "resource.type": "index_or_alias", "resource.id": index},
        "status": 404
    }))
    .expect("JSON");
    response
}

fn random_id(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The actions of a bulk body (ending with a newline); a whole-request error otherwise.
fn parse_actions(body: &[u8], default_index: Option<&str>) -> Result<Vec<Action>, Response> {
    let mut lines = body[..body.len() - 1].split(|&b| b == b'\n').enumerate();
    let mut actions = Vec::new();
    let mut missing_index = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let malformed = |what: &str| {
            error(
                400,
                "illegal_argument_exception",
                &format!("Malformed action/metadata line [{}], {what}", n + 1),
            )
        };
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| malformed(&format!("expected a JSON object: {e}")))?;
        let Some(object) = value.as_object().filter(|o| o.len() == 1) else {
            return Err(malformed("expected START_OBJECT with one action"));
        };
        let (op, params) = object.iter().next().expect("one key");
        if !matches!(op.as_str(), "index" | "create" | "update" | "delete") {
            return Err(malformed(&format!(
                "expected one of [create, delete, index, update] but found [{op}]"
            )));
        }
        let Some(params) = params.as_object() else {
            return Err(malformed(
                "expected START_OBJECT for the action's parameters",
            ));
        };
        let text = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let index = text("_index").or_else(|| default_index.map(str::to_owned));
        if index.is_none() {
            missing_index.push(actions.len() + 1);
        }
        let id = match params.get("_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 512 => Some(id.clone()),
            Some(other) => return Err(malformed(&format!("invalid _id [{other}]"))),
        };
        let source = if op == "delete" {
            None
        } else {
            match lines.next() {
                Some((_, source)) => Some(source.to_vec()),
                None => {
                    return Err(error(
                        400,
                        "illegal_argument_exception",
                        "The bulk request must be terminated by a newline [\\n]",
                    ))
                }
            }
        };
        if op == "delete" && id.is_none() {
            return Err(malformed("delete requires an _id"));
        }
        actions.push(Action {
            op: op.clone(),
            index,
            id,
            source,
        });
    }
    if actions.is_empty() {
        return Err(error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    if !missing_index.is_empty() {
        let reasons: String = missing_index
            .iter()
            .map(|n| format!("{n}: index is missing;"))
            .collect();
        return Err(error(
            400,
            "action_request_validation_exception",
            &format!("Validation Failed: {reasons}"),
        ));
    }
    Ok(actions)
}
