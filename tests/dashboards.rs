//! The Kibana saved objects in `dashboards/kibana/plowline.ndjson` against the Elasticsearch
//! index templates the loader installs: every reference resolves, and every field a
//! visualization, map or query uses exists in the template with a type that fits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn saved_objects() -> Vec<Value> {
    repo("dashboards/kibana/plowline.ndjson")
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1))
        })
        .collect()
}

/// A JSON string attribute that itself holds JSON (`visState`, `panelsJSON`, ...).
fn nested(object: &Value, pointer: &str) -> Value {
    let text = object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{} has no {pointer}", object["id"]));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{} {pointer}: {e}", object["id"]))
}

/// Field name → mapping type, from a template's `properties` (objects flattened with dots).
fn field_types(template: &Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, properties: &Value, out: &mut BTreeMap<String, String>) {
        for (name, mapping) in properties.as_object().expect("properties") {
            let path = format!("{prefix}{name}");
            if let Some(inner) = mapping.get("properties") {
                walk(&format!("{path}."), inner, out);
            }
            if let Some(ty) = mapping.get("type").and_then(Value::as_str) {
                out.insert(path, ty.to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &template["template"]["mappings"]["properties"],
        &mut out,
    );
    out
}

fn template(path: &str) -> Value {
    serde_json::from_str(&repo(path)).expect("template JSON")
}

/// A data view: its index pattern and the field types of the template that covers it.
type View = (String, BTreeMap<String, String>);

/// The data views by id.
fn data_views(objects: &[Value]) -> BTreeMap<String, View> {
    let templates = [
        template("processor/src/sinks/elasticsearch/index_template.json"),
        template("processor/src/sinks/elasticsearch/bad_rows_template.json"),
    ];
    let mut views = BTreeMap::new();
    for view in objects.iter().filter(|o| o["type"] == "index-pattern") {
        let title = view["attributes"]["title"].as_str().unwrap().to_owned();
        let prefix = title.trim_end_matches('*');
        let template = templates
            .iter()
            .find(|t| {
                t["index_patterns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p.as_str().unwrap().trim_end_matches('*') == prefix)
            })
            .unwrap_or_else(|| panic!("no index template covers the data view {title}"));
        let fields = field_types(template);
        let time = view["attributes"]["timeFieldName"].as_str().unwrap();
        assert_eq!(
            fields.get(time).map(String::as_str),
            Some("date"),
            "{title}: {time}"
        );
        views.insert(view["id"].as_str().unwrap().to_owned(), (title, fields));
    }
    views
}

#[test]
fn every_reference_resolves() {
    let objects = saved_objects();
    let ids: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().into(),
                o["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ids.len(), objects.len(), "duplicate ids");
    for object in &objects {
        let refs = object["references"].as_array().expect("references");
        let names: BTreeSet<&str> = refs.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(
            names.len(),
            refs.len(),
            "{}: duplicate reference names",
            object["id"]
        );
        for r in refs {
            let key = (
                r["type"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            );
            assert!(
                ids.contains(&key),
                "{}: dangling reference {r}",
                object["id"]
            );
        }
        // Every name the attributes use is declared in `references`.
        let used: Vec<String> = match object["type"].as_str().unwrap() {
            "visualization" => {
                vec![
                    nested(object, "/attributes/kibanaSavedObjectMeta/searchSourceJSON")
                        ["indexRefName"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ]
            }
            "map" => nested(object, "/attributes/layerListJSON")
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| l["sourceDescriptor"]["indexPatternRefName"].as_str())
                .map(str::to_owned)
                .collect(),
            "dashboard" => nested(object, "/attributes/panelsJSON")
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}",
                        p["panelIndex"].as_str().unwrap(),
                        p["panelRefName"].as_str().unwrap()
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        for name in used {
            assert!(
                names.contains(name.as_str()),
                "{}: {name} not in references",
                object["id"]
            );
        }
    }
    let dashboard = objects
        .iter()
        .find(|o| o["type"] == "dashboard")
        .expect("a dashboard");
    let panels = dashboard["references"].as_array().unwrap().len();
    let visuals = objects
        .iter()
        .filter(|o| o["type"] == "visualization" || o["type"] == "map");
    assert_eq!(
        panels,
        visuals.count(),
        "every visualization is on the dashboard"
    );
}

/// The type a use of a field needs.
fn fits(usage: &str, ty: &str) -> bool {
    match usage {
        "terms" => matches!(ty, "keyword" | "boolean" | "integer" | "long"),
        "cardinality" => matches!(ty, "keyword" | "integer" | "long"),
        "date_histogram" => ty == "date",
        "geo" => ty == "geo_point",
        "query" => true,
        other => panic!("unknown usage {other}"),
    }
}

/// The fields a KQL query names (`field : value`).
fn query_fields(query: &str) -> Vec<String> {
    query
        .split(" and ")
        .flat_map(|part| part.split(" or "))
        .filter_map(|clause| clause.trim().trim_start_matches("not ").split(" : ").next())
        .filter(|field| !field.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_field_used_exists_in_the_index_template_with_a_type_that_fits() {
    let objects = saved_objects();
    let views = data_views(&objects);
    let mut checked = 0;
    for object in &objects {
        let view_of = |name: &str| {
            let r = object["references"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            &views[r["id"].as_str().unwrap()]
        };
        // (field, how it is used, the data view it is used on)
        let mut uses: Vec<(String, String, &View)> = Vec::new();
        match object["type"].as_str().unwrap() {
            "visualization" => {
                let search = nested(object, "/attributes/kibanaSavedObjectMeta/searchSourceJSON");
                let view = view_of(search["indexRefName"].as_str().unwrap());
                let state = nested(object, "/attributes/visState");
                for agg in state["aggs"].as_array().unwrap() {
                    if let Some(field) = agg["params"]["field"].as_str() {
                        let usage = agg["type"].as_str().unwrap().to_owned();
                        uses.push((field.to_owned(), usage, view));
                    }
                }
                for field in query_fields(search["query"]["query"].as_str().unwrap()) {
                    uses.push((field, "query".into(), view));
                }
            }
            "map" => {
                for layer in nested(object, "/attributes/layerListJSON")
                    .as_array()
                    .unwrap()
                {
                    let source = &layer["sourceDescriptor"];
                    let Some(name) = source["indexPatternRefName"].as_str() else {
                        continue;
                    };
                    let view = view_of(name);
                    uses.push((
                        source["geoField"].as_str().unwrap().into(),
                        "geo".into(),
                        view,
                    ));
                    for metric in source["metrics"].as_array().into_iter().flatten() {
                        if let Some(field) = metric["field"].as_str() {
                            uses.push((
                                field.into(),
                                metric["type"].as_str().unwrap().into(),
                                view,
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        for (field, usage, (title, types)) in uses {
            let ty = types
                .get(&field)
                .unwrap_or_else(|| panic!("{}: {field} is not mapped for {title}", object["id"]));
            assert!(
                fits(&usage, ty),
                "{}: {usage} on {field}, mapped {ty}",
                object["id"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} field uses checked");
}

#[test]
fn the_ndjson_is_what_the_generator_writes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/kibana/generate.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg("--check")
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "dashboards/kibana/plowline.ndjson is stale"
    );
}
