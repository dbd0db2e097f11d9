//! Mappings: the field types of an index, taken from a matching index template and extended by
//! dynamic mapping, and the checks a document must pass to be indexed (Elasticsearch's
//! "document parsing": a value that does not fit its field's type fails the whole document).
//!
//! Covered: `keyword`, `text`, `match_only_text`, `wildcard`, `constant_keyword` (any scalar),
//! the integer types `long`/`integer`/`short`/`byte`/`unsigned_long` (numbers and numeric
//! strings, fractions truncated as `coerce` does, ranges checked), the floating types, `boolean`,
//! `date` (`strict_date_optional_time||epoch_millis`), `geo_point` (`"lat,lon"`, `{lat, lon}`,
//! `[lon, lat]`, geohash, `POINT (lon lat)`), `object` with `properties` and `dynamic`
//! (`true`/`false`/`strict`), dynamic templates (`match`, `unmatch`, `path_match`,
//! `path_unmatch`, `match_mapping_type`), `date_detection`, `numeric_detection`, and the limits
//! `index.mapping.total_fields.limit` (with `ignore_dynamic_beyond_limit`) and
//! `index.mapping.depth.limit`. Any other type accepts every value.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a document cannot be indexed: an Elasticsearch error object, item status 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    /// `error.type`, e.g. `document_parsing_exception`.
    pub kind: &'static str,
    /// `error.reason`.
    pub reason: String,
    /// `error.caused_by`, when Elasticsearch gives one.
    pub caused_by: Option<(&'static str, String)>,
}

impl DocError {
    fn parsing(reason: String) -> DocError {
        DocError {
            kind: "document_parsing_exception",
            reason,
            caused_by: None,
        }
    }

    /// The error object of a bulk item or of a whole response.
    pub fn to_json(&self) -> Value {
        let mut error = serde_json::json!({"type": self.kind, "reason": self.reason});
        if let Some((kind, reason)) = &self.caused_by {
            error["caused_by"] = serde_json::json!({"type": kind, "reason": reason});
        }
        error
    }
}

/// Whether unmapped fields are added (`true`), ignored (`false`) or refused (`strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dynamic {
    True,
    False,
    Strict,
}

/// The type of one field.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Any scalar, kept as text.
    Text,
    /// An integer type and its range.
    Integer {
        min: f64,
        max: f64,
    },
    /// A floating-point type.
    Float,
    Boolean,
    Date,
    GeoPoint,
    Object(ObjectMapping),
    /// A type this server does not check.
    Unchecked,
}

/// One mapped field: its type, and its definition as given (for `GET <index>/_mapping`).
#[derive(Debug, Clone, PartialEq)]
struct Field {
    kind: Kind,
    definition: Map<String, Value>,
}

/// An object's fields.
#[derive(Debug, Clone, Default, PartialEq)]
struct ObjectMapping {
    properties: BTreeMap<String, Field>,
    dynamic: Option<Dynamic>,
}

#[derive(Debug, Clone, PartialEq)]
struct DynamicTemplate {
    name: String,
    field_match: Option<String>,
    unmatch: Option<String>,
    path_match: Option<String>,
    path_unmatch: Option<String>,
    mapping_types: Option<Vec<String>>,
    mapping: Map<String, Value>,
}

/// The mapping of one index.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    root: ObjectMapping,
    dynamic_templates: Vec<DynamicTemplate>,
    date_detection: bool,
    numeric_detection: bool,
    total_fields_limit: usize,
    depth_limit: usize,
    ignore_dynamic_beyond_limit: bool,
}

impl Default for Mapping {
    fn default() -> Mapping {
        Mapping {
            root: ObjectMapping::default(),
            dynamic_templates: Vec::new(),
            date_detection: true,
            numeric_detection: false,
            total_fields_limit: 1000,
            depth_limit: 20,
            ignore_dynamic_beyond_limit: false,
        }
    }
}

fn setting<'s>(settings: &'s Map<String, Value>, key: &str) -> Option<&'s Value> {
    settings
        .get(key)
        .or_else(|| settings.get(key.strip_prefix("index.").unwrap_or(key)))
}

fn as_usize(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Mapping {
    /// The mapping given by a template's `mappings` and flattened `settings` (dotted keys).
    pub fn from_template(
        mappings: Option<&Value>,
        settings: &Map<String, Value>,
    ) -> Result<Mapping, String> {
        let mut mapping = Mapping::default();
        if let Some(limit) = setting(settings, "index.mapping.total_fields.limit") {
            mapping.total_fields_limit =
                as_usize(limit).ok_or("total_fields.limit is not a number")?;
        }
        if let Some(limit) = setting(settings, "index.mapping.depth.limit") {
            mapping.depth_limit = as_usize(limit).ok_or("depth.limit is not a number")?;
        }
        if let Some(ignore) = setting(
            settings,
            "index.mapping.total_fields.ignore_dynamic_beyond_limit",
        ) {
            mapping.ignore_dynamic_beyond_limit =
                as_bool(ignore).ok_or("ignore_dynamic_beyond_limit is not a boolean")?;
        }
        let Some(mappings) = mappings else {
            return Ok(mapping);
        };
        let mappings = mappings.as_object().ok_or("mappings must be an object")?;
        for (key, value) in mappings {
            match key.as_str() {
                "properties" | "dynamic" => {}
                "date_detection" => {
                    mapping.date_detection =
                        as_bool(value).ok_or("date_detection must be a boolean")?
                }
                "numeric_detection" => {
                    mapping.numeric_detection =
                        as_bool(value).ok_or("numeric_detection must be a boolean")?
                }
                "dynamic_templates" => {
                    let list = value
                        .as_array()
                        .ok_or("dynamic_templates must be an array")?;
                    for entry in list {
                        let (name, body) = entry
                            .as_object()
                            .and_then(|o| o.iter().next())
                            .ok_or("a dynamic template must be an object with one key")?;
                        mapping
                            .dynamic_templates
                            .push(DynamicTemplate::parse(name, body)?);
                    }
                }
                "_source" | "_meta" | "_routing" | "runtime" | "subobjects" => {}
                other => return Err(format!("unknown mapping parameter [{other}]")),
            }
        }
        mapping.root = parse_object(mappings)?;
        Ok(mapping)
    }

    /// The mapping as `GET <index>/_mapping` shows it.
    pub fn to_json(&self) -> Value {
        let mut out = render_object(&self.root);
        if !self.dynamic_templates.is_empty() {
            let templates = self
                .dynamic_templates
                .iter()
                .map(|t| {
                    let mut body = Map::new();
                    let mut put = |k: &str, v: &Option<String>| {
                        if let Some(v) = v {
                            body.insert(k.to_owned(), Value::String(v.clone()));
                        }
                    };
                    put("match", &t.field_match);
                    put("unmatch", &t.unmatch);
                    put("path_match", &t.path_match);
                    put("path_unmatch", &t.path_unmatch);
                    if let Some(types) = &t.mapping_types {
                        body.insert("match_mapping_type".into(), serde_json::json!(types));
                    }
                    body.insert("mapping".into(), Value::Object(t.mapping.clone()));
                    serde_json::json!({ t.name.clone(): body })
                })
                .collect();
            out.insert("dynamic_templates".into(), Value::Array(templates));
        }
        out.insert("date_detection".into(), Value::Bool(self.date_detection));
        Value::Object(out)
    }

    /// The type of the field at a dotted path (`geo_location`, `contexts_x.id`), if mapped.
    pub fn field_type(&self, path: &str) -> Option<String> {
        let mut object = &self.root;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let field = object.properties.get(part)?;
            if parts.peek().is_none() {
                return Some(match &field.kind {
                    Kind::Object(_) => "object".to_owned(),
                    _ => field.definition.get("type")?.as_str()?.to_owned(),
                });
            }
            match &field.kind {
                Kind::Object(inner) => object = inner,
                _ => return None,
            }
        }
        None
    }

    /// Checks `doc` (the `_source`) against the mapping, adding its new fields when dynamic
    /// mapping allows; on an error the mapping is unchanged.
    pub fn index_document(&mut self, doc: &Value, id: &str) -> Result<(), DocError> {
        let Value::Object(doc) = doc else {
            return Err(DocError::parsing(format!(
                "failed to parse: the document with id '{id}' is not a JSON object"
            )));
        };
        let mut root = self.root.clone();
        let mut budget = self
            .total_fields_limit
            .saturating_sub(count_fields(&self.root));
        let walk = Walk {
            mapping: self,
            id,
            budget: &mut budget,
        };
        walk.object(doc, &mut root, "", 1, Dynamic::True)?;
        self.root = root;
        Ok(())
    }
}

impl DynamicTemplate {
    fn parse(name: &str, body: &Value) -> Result<DynamicTemplate, String> {
        let body = body
            .as_object()
            .ok_or("a dynamic template must be an object")?;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        let mapping_types = match body.get("match_mapping_type") {
            None => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or("match_mapping_type: strings")
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("match_mapping_type must be a string or an array".into()),
        };
        let mapping = body
            .get("mapping")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("dynamic template [{name}] has no mapping"))?
            .clone();
        Ok(DynamicTemplate {
            name: name.to_owned(),
            field_match: text("match"),
            unmatch: text("unmatch"),
            path_match: text("path_match"),
            path_unmatch: text("path_unmatch"),
            mapping_types,
            mapping,
        })
    }

    fn matches(&self, name: &str, path: &str, mapping_type: &str) -> bool {
        let glob =
            |pattern: &Option<String>, text: &str| pattern.as_deref().map(|p| glob_match(p, text));
        glob(&self.field_match, name) != Some(false)
            && glob(&self.unmatch, name) != Some(true)
            && glob(&self.path_match, path) != Some(false)
            && glob(&self.path_unmatch, path) != Some(true)
            && self
                .mapping_types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == "*" || t == mapping_type))
    }
}

/// `*` matches any run of characters (as in index patterns and dynamic templates).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return text.ends_with(part);
        }
        match text.find(part) {
            Some(at) => text = &text[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn parse_dynamic(value: &Value) -> Result<Dynamic, String> {
    match value {
        Value::Bool(true) => Ok(Dynamic::True),
        Value::Bool(false) => Ok(Dynamic::False),
        Value::String(s) => match s.as_str() {
            "true" => Ok(Dynamic::True),
            "false" | "runtime" => Ok(Dynamic::False),
            "strict" => Ok(Dynamic::Strict),
            other => Err(format!("unknown dynamic value [{other}]")),
        },
        other => Err(format!("unknown dynamic value [{other}]")),
    }
}

fn parse_object(definition: &Map<String, Value>) -> Result<ObjectMapping, String> {
    let mut object = ObjectMapping {
        dynamic: definition.get("dynamic").map(parse_dynamic).transpose()?,
        ..ObjectMapping::default()
    };
    if let Some(properties) = definition.get("properties") {
        let properties = properties
            .as_object()
            .ok_or("properties must be an object")?;
        for (name, field) in properties {
            let field = field
                .as_object()
                .ok_or_else(|| format!("the mapping of [{name}] must be an object"))?;
            object
                .properties
                .insert(name.clone(), parse_field(name, field)?);
        }
    }
    Ok(object)
}

fn parse_field(name: &str, definition: &Map<String, Value>) -> Result<Field, String> {
    let ty = match definition.get("type") {
        None => "object",
        Some(Value::String(ty)) => ty.as_str(),
        Some(_) => return Err(format!("the type of [{name}] must be a string")),
    };
    let kind = match ty {
        "object" | "nested" => Kind::Object(parse_object(definition)?),
        "keyword" | "text" | "match_only_text" | "wildcard" | "constant_keyword" | "ip" => {
            Kind::Text
        }
        "long" => Kind::Integer {
            min: i64::MIN as f64,
            max: i64::MAX as f64,
        },
        "integer" => Kind::Integer {
            min: i32::MIN.into(),
            max: i32::MAX.into(),
        },
        "short" => Kind::Integer {
            min: i16::MIN.into(),
            max: i16::MAX.into(),
        },
        "byte" => Kind::Integer {
            min: i8::MIN.into(),
            max: i8::MAX.into(),
        },
        "unsigned_long" => Kind::Integer {
            min: 0.0,
            max: u64::MAX as f64,
        },
        "double" | "float" | "half_float" | "scaled_float" => Kind::Float,
        "boolean" => Kind::Boolean,
        "date" | "date_nanos" => Kind::Date,
        "geo_point" => Kind::GeoPoint,
        "flattened" | "binary" | "alias" | "version" | "geo_shape" | "point" | "shape"
        | "dense_vector" | "histogram" | "integer_range" | "long_range" | "float_range"
        | "double_range" | "date_range" | "ip_range" => Kind::Unchecked,
        other => {
            return Err(format!(
                "No handler for type [{other}] declared on field [{name}]"
            ))
        }
    };
    let mut definition = definition.clone();
    definition.remove("properties");
    Ok(Field { kind, definition })
}

fn render_object(object: &ObjectMapping) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(dynamic) = object.dynamic {
        let value = match dynamic {
            Dynamic::True => Value::String("true".into()),
            Dynamic::False => Value::String("false".into()),
            Dynamic::Strict => Value::String("strict".into()),
        };
        out.insert("dynamic".into(), value);
    }
    let properties: Map<String, Value> = object
        .properties
        .iter()
        .map(|(name, field)| {
            let mut def = field.definition.clone();
            if let Kind::Object(inner) = &field.kind {
                def.extend(render_object(inner));
            }
            (name.clone(), Value::Object(def))
        })
        .collect();
    if !properties.is_empty() {
        out.insert("properties".into(), Value::Object(properties));
    }
    out
}

fn count_fields(object: &ObjectMapping) -> usize {
    object
        .properties
        .values()
        .map(|field| {
            let subfields = field
                .definition
                .get("fields")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            1 + subfields
                + match &field.kind {
                    Kind::Object(inner) => count_fields(inner),
                    _ => 0,
                }
        })
        .sum()
}

/// One document being checked.
struct Walk<'m> {
    mapping: &'m Mapping,
    id: &'m str,
    /// How many fields may still be added before `total_fields.limit`.
    budget: &'m mut usize,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A short rendering of a value, as Elasticsearch's "Preview of field's value".
fn preview(value: &Value) -> String {
    match value {
        Value::String(s) => s.chars().take(100).collect(),
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", preview(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

impl Walk<'_> {
    fn object(
        mut self,
        doc: &Map<String, Value>,
        object: &mut ObjectMapping,
        path: &str,
        depth: usize,
        inherited: Dynamic,
    ) -> Result<Self, DocError> {
        let dynamic = object.dynamic.unwrap_or(inherited);
        for (name, value) in doc {
            let field_path = join(path, name);
            if !object.properties.contains_key(name) {
                let Some(field) = self.new_field(name, &field_path, value, path, depth, dynamic)?
                else {
                    continue;
                };
                object.properties.insert(name.clone(), field);
            }
            let field = object.properties.get_mut(name).expect("inserted above");
            self = self.value(value, field, &field_path, name, depth, dynamic)?;
        }
        Ok(self)
    }

    /// The mapping of an unmapped field, or `None` when it is not mapped (dynamic `false`, a
    /// null or empty array, or beyond the field limit with `ignore_dynamic_beyond_limit`).
    fn new_field(
        &mut self,
        name: &str,
        path: &str,
        value: &Value,
        parent: &str,
        depth: usize,
        dynamic: Dynamic,
    ) -> Result<Option<Field>, DocError> {
        let sample = match value {
            Value::Array(items) => items.iter().find(|v| !v.is_null()),
            Value::Null => None,
            value => Some(value),
        };
        let Some(sample) = sample else {
            return Ok(None);
        };
        match dynamic {
            Dynamic::False => return Ok(None),
            Dynamic::Strict => {
                let within = if parent.is_empty() { "_doc" } else { parent };
                return Err(DocError {
                    kind: "strict_dynamic_mapping_exception",
                    reason: format!(
                        "mapping set to strict, dynamic introduction of [{name}] within [{within}] is not allowed"
                    ),
                    caused_by: None,
                });
            }
            Dynamic::True => {}
        }
        if *self.budget == 0 {
            if self.mapping.ignore_dynamic_beyond_limit {
                return Ok(None);
            }
            return Err(DocError {
                kind: "document_parsing_exception",
                reason: format!("failed to parse: Limit of total fields [{}] has been exceeded while adding new fields [1]", self.mapping.total_fields_limit),
                caused_by: Some((
                    "illegal_argument_exception",
                    format!("Limit of total fields [{}] has been exceeded while adding new fields [1]", self.mapping.total_fields_limit),
                )),
            });
        }
        let mapping_type = match sample {
            Value::String(s) if self.mapping.date_detection && is_date(s) => "date",
            Value::String(s) if self.mapping.numeric_detection && s.parse::<i64>().is_ok() => {
                "long"
            }
            Value::String(s) if self.mapping.numeric_detection && s.parse::<f64>().is_ok() => {
                "double"
            }
            Value::String(_) => "string",
            Value::Number(n) if n.is_f64() => "double",
            Value::Number(_) => "long",
            Value::Bool(_) => "boolean",
            Value::Object(_) => "object",
            Value::Array(_) | Value::Null => "object",
        };
        if mapping_type == "object" && depth + 1 > self.mapping.depth_limit {
            return Err(DocError {
                kind: "document_parsing_exception",
                reason: format!(
                    "failed to parse: Limit of mapping depth [{}] has been exceeded due to object field [{path}]",
                    self.mapping.depth_limit
                ),
                caused_by: Some((
                    "illegal_argument_exception",
                    format!("Limit of mapping depth [{}] has been exceeded due to object field [{path}]", self.mapping.depth_limit),
                )),
            });
        }
        let template = self
            .mapping
            .dynamic_templates
            .iter()
            .find(|t| t.matches(name, path, mapping_type));
        let definition = match template {
            Some(template) => {
                let text = Value::Object(template.mapping.clone()).to_string();
                let default_type = match mapping_type {
                    "string" => "text",
                    other => other,
                };
                let text = text.replace("{dynamic_type}", default_type).replace("{name}", name);
                let mut definition: Map<String, Value> =
                    serde_json::from_str(&text).expect("a rendered JSON object");
                if !definition.contains_key("type") && mapping_type != "object" {
                    definition.insert("type".into(), Value::String(default_type.into()));
                }
                definition
            }
            None => match mapping_type {
                "string" => serde_json::json!({"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}})
                    .as_object()
                    .cloned()
                    .expect("an object"),
                "double" => single("float"),
                "object" => Map::new(),
                other => single(other),
            },
        };
        let field = parse_field(name, &definition).map_err(|reason| DocError {
            kind: "document_parsing_exception",
            reason: format!("failed to parse: {reason}"),
            caused_by: None,
        })?;
        *self.budget = self.budget.saturating_sub(1);
        Ok(Some(field))
    }

    fn value(
        mut self,
        value: &Value,
        field: &mut Field,
        path: &str,
        name: &str,
        depth: usize,
        dynamic: Dynamic,
    ) -> Result<Self, DocError> {
        if value.is_null() {
            return Ok(self);
        }
        if let Kind::Object(object) = &mut field.kind {
            return match value {
                Value::Object(inner) => self.object(inner, object, path, depth + 1, dynamic),
                Value::Array(items) => {
                    for item in items {
                        self = self.value(item, field, path, name, depth, dynamic)?;
                    }
                    Ok(self)
                }
                _ => Err(DocError::parsing(format!(
                    "object mapping for [{path}] tried to parse field [{name}] as object, but found a concrete value"
                ))),
            };
        }
        if field.kind == Kind::GeoPoint {
            return match check_geo_point(value) {
                Ok(()) => Ok(self),
                Err(cause) => Err(self.field_error(path, "geo_point", value, cause)),
            };
        }
        if let Value::Array(items) = value {
            for item in items {
                self = self.value(item, field, path, name, depth, dynamic)?;
            }
            return Ok(self);
        }
        let ty = field
            .definition
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_owned();
        match check_scalar(&field.kind, value) {
            Ok(()) => Ok(self),
            Err(cause) => Err(self.field_error(path, &ty, value, cause)),
        }
    }

    fn field_error(
        &self,
        path: &str,
        ty: &str,
        value: &Value,
        cause: (&'static str, String),
    ) -> DocError {
        DocError {
            kind: "document_parsing_exception",
            reason: format!(
                "failed to parse field [{path}] of type [{ty}] in document with id '{}'. Preview of field's value: '{}'",
                self.id,
                preview(value)
            ),
            caused_by: Some(cause),
        }
    }
}

fn single(ty: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("type".into(), Value::String(ty.into()));
    map
}

/// Checks one non-null, non-array value against a leaf type.
fn check_scalar(kind: &Kind, value: &Value) -> Result<(), (&'static str, String)> {
    let start_object = || {
        (
            "illegal_state_exception",
            "Can't get text on a START_OBJECT".to_owned(),
        )
    };
    match kind {
        Kind::Object(_) | Kind::GeoPoint | Kind::Unchecked => Ok(()),
        Kind::Text => match value {
            Value::Object(_) => Err(start_object()),
            _ => Ok(()),
        },
        Kind::Integer { min, max } => {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                Value::Object(_) => return Err(start_object()),
                _ => None,
            };
            let Some(number) = number.filter(|n| n.is_finite()) else {
                return Err(("illegal_argument_exception", format!("For input string: {value}")));
            };
            if number < *min || number > *max + 1.0 {
                return Err(("illegal_argument_exception", format!("Value [{value}] is out of range")));
            }
            Ok(())
        }
        Kind::Float => match value {
            Value::Number(_) => Ok(()),
            Value::String(s) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => Ok(()),
            Value::Object(_) => Err(start_object()),
            _ => Err(("number_format_exception", format!("For input string: {value}"))),
        },
        Kind::Boolean => match value {
            Value::Bool(_) => Ok(()),
            Value::String(s) if s == "true" || s == "false" || s.is_empty() => Ok(()),
            Value::Object(_) => Err(start_object()),
            _ => Err((
                "illegal_argument_exception",
                format!("Failed to parse value [{}] as only [true] or [false] are allowed.", preview(value)),
            )),
        },
        Kind::Date => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            Value::String(s) if is_date(s) || s.parse::<i64>().is_ok() => Ok(()),
            Value::Object(_) => Err(start_object()),
            _ => Err((
                "illegal_argument_exception",
                format!(
                    "failed to parse date field [{}] with format [strict_date_optional_time||epoch_millis]",
                    preview(value)
                ),
            )),
        },
    }
}

/// `strict_date_optional_time`: `yyyy[-MM[-dd]]` then optionally `T` and `HH[:mm[:ss[.f+]]]`
/// and a zone `Z`, `±HH`, `±HHmm` or `±HH:mm`.
fn is_date(text: &str) -> bool {
    fn num(text: &str, digits: usize, max: u32) -> Option<(u32, &str)> {
        let part = text.get(..digits)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u32 = part.parse().ok()?;
        (value <= max).then_some((value, &text[digits..]))
    }
    let Some((year, rest)) = num(text, 4, 9999) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let Some((month, rest)) = num(rest, 2, 12).filter(|(m, _)| *m >= 1) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month as usize - 1];
    let Some((_, rest)) = num(rest, 2, days).filter(|(d, _)| *d >= 1) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('T') else {
        return false;
    };
    let Some((_, mut rest)) = num(rest, 2, 23) else {
        return false;
    };
    for _ in 0..2 {
        if let Some(after) = rest.strip_prefix(':') {
            match num(after, 2, 59) {
                Some((_, after)) => rest = after,
                None => return false,
            }
        } else {
            break;
        }
    }
    if let Some(after) = rest.strip_prefix(['.', ',']) {
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) {
            return false;
        }
        rest = &after[digits..];
    }
    match rest.as_bytes().first() {
        None => true,
        Some(b'Z') => rest.len() == 1,
        Some(b'+' | b'-') => {
            let zone = &rest[1..];
            match num(zone, 2, 18) {
                Some((_, "")) => true,
                Some((_, after)) => {
                    let after = after.strip_prefix(':').unwrap_or(after);
                    matches!(num(after, 2, 59), Some((_, "")))
                }
                None => false,
            }
        }
        Some(_) => false,
    }
}

/// Accepts the geo_point forms; the cause of a refusal otherwise.
fn check_geo_point(value: &Value) -> Result<(), (&'static str, String)> {
    let illegal = |why: String| ("illegal_argument_exception", why);
    let lat_lon = |lat: f64, lon: f64| {
        if !(-90.0..=90.0).contains(&lat) {
            Err(illegal(format!("illegal latitude value [{lat}]")))
        } else if !(-180.0..=180.0).contains(&lon) {
            Err(illegal(format!("illegal longitude value [{lon}]")))
        } else {
            Ok(())
        }
    };
    match value {
        Value::String(text) => {
            if let Some((lat, lon)) = text.split_once(',') {
                match (lat.trim().parse::<f64>(), lon.trim().parse::<f64>()) {
                    (Ok(lat), Ok(lon)) => lat_lon(lat, lon),
                    _ => Err(illegal(format!("failed to parse [{text}] as a geo_point"))),
                }
            } else if let Some(point) = text
                .strip_prefix("POINT (")
                .and_then(|t| t.strip_suffix(')'))
            {
                let coords: Vec<Option<f64>> =
                    point.split_whitespace().map(|c| c.parse().ok()).collect();
                match coords.as_slice() {
                    [Some(lon), Some(lat)] => lat_lon(*lat, *lon),
                    _ => Err(illegal(format!("failed to parse [{text}] as WKT"))),
                }
            } else if !text.is_empty()
                && text.len() <= 12
                && text
                    .bytes()
                    .all(|b| b"0123456789bcdefghjkmnpqrstuvwxyz".contains(&b))
            {
                Ok(())
            } else {
                Err(illegal(format!("unsupported symbol in geohash [{text}]")))
            }
        }
        Value::Object(map) => match (
            map.get("lat").and_then(Value::as_f64),
            map.get("lon").and_then(Value::as_f64),
        ) {
            (Some(lat), Some(lon)) if map.len() == 2 => lat_lon(lat, lon),
            _ => Err((
                "parse_exception",
                "field [lat] and [lon] must be numbers".into(),
            )),
        },
        Value::Array(items) => match items.as_slice() {
            [Value::Number(lon), Value::Number(lat)]
            | [Value::Number(lon), Value::Number(lat), Value::Number(_)] => lat_lon(
                lat.as_f64().unwrap_or(f64::NAN),
                lon.as_f64().unwrap_or(f64::NAN),
            ),
            items
                if items.iter().all(|i| {
                    matches!(i, Value::String(_) | Value::Object(_) | Value::Array(_))
                }) =>
            {
                items.iter().try_for_each(check_geo_point)
            }
            _ => Err(("parse_exception", "geo_point expected".into())),
        },
        _ => Err(("parse_exception", "geo_point expected".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(mappings: Value) -> Mapping {
        Mapping::from_template(Some(&mappings), &Map::new()).unwrap()
    }

    #[test]
    fn values_that_do_not_fit_their_type_fail_the_document() {
        let mut m = mapping(json!({"properties": {
            "n": {"type": "long"}, "d": {"type": "double"}, "k": {"type": "keyword"},
            "t": {"type": "date"}, "g": {"type": "geo_point"}, "b": {"type": "boolean"},
            "o": {"properties": {"x": {"type": "integer"}}}
        }}));
        let good = json!({"n": "12", "d": 1.5, "k": 7, "t": "2024-02-29T10:00:00.123Z",
            "g": "51.5,-0.25", "b": "true", "o": [{"x": 1}, {"x": 2.7}]});
        m.index_document(&good, "1").unwrap();
        for (doc, field) in [
            (json!({"n": "abc"}), "[n] of type [long]"),
            (json!({"d": "x"}), "[d] of type [double]"),
            (json!({"k": {"a": 1}}), "[k] of type [keyword]"),
            (json!({"t": "2024-02-30"}), "[t] of type [date]"),
            (json!({"g": "100,0"}), "[g] of type [geo_point]"),
            (json!({"b": "yes"}), "[b] of type [boolean]"),
            (json!({"o": {"x": 1e20}}), "[o.x] of type [integer]"),
        ] {
            let error = m.index_document(&doc, "7").unwrap_err();
            assert_eq!(error.kind, "document_parsing_exception");
            assert!(error.reason.contains(field), "{error:?}");
            assert!(error.reason.contains("'7'"), "{error:?}");
        }
        let error = m.index_document(&json!({"o": 3}), "8").unwrap_err();
        assert!(error.reason.contains("object mapping for [o]"), "{error:?}");
    }

    #[test]
    fn dynamic_fields_are_added_and_then_enforced() {
        let mut m = mapping(json!({
            "date_detection": false,
            "dynamic_templates": [
                {"ctx_strings": {"path_match": "contexts_*", "match_mapping_type": "string",
                                 "mapping": {"type": "keyword", "ignore_above": 1024}}},
                {"ctx_numbers": {"match_mapping_type": "long", "mapping": {"type": "double"}}}
            ]
        }));
        m.index_document(
            &json!({"contexts_a": [{"id": "x", "n": 1}], "s": "2024-01-01"}),
            "1",
        )
        .unwrap();
        assert_eq!(m.field_type("contexts_a.id").as_deref(), Some("keyword"));
        assert_eq!(m.field_type("contexts_a.n").as_deref(), Some("double"));
        assert_eq!(m.field_type("s").as_deref(), Some("text"));
        m.index_document(&json!({"contexts_a": [{"n": 2.5}]}), "2")
            .unwrap();
        let error = m
            .index_document(&json!({"contexts_a": [{"n": "many"}]}), "3")
            .unwrap_err();
        assert!(
            error.reason.contains("[contexts_a.n] of type [double]"),
            "{error:?}"
        );
    }

    #[test]
    fn a_failed_document_leaves_the_mapping_unchanged() {
        let mut m = mapping(json!({"properties": {"n": {"type": "long"}}}));
        m.index_document(&json!({"new": 1, "n": "x"}), "1")
            .unwrap_err();
        assert_eq!(m.field_type("new"), None);
    }

    #[test]
    fn field_limit_and_strict_mapping() {
        let settings = json!({"index.mapping.total_fields.limit": 2})
            .as_object()
            .cloned()
            .unwrap();
        let mut m = Mapping::from_template(None, &settings).unwrap();
        m.index_document(&json!({"a": 1, "b": 2}), "1").unwrap();
        let error = m.index_document(&json!({"c": 1}), "2").unwrap_err();
        assert!(
            error.reason.contains("Limit of total fields [2]"),
            "{error:?}"
        );
        let mut ignore = Mapping::from_template(
            None,
            &json!({"index.mapping.total_fields.limit": "1",
                    "index.mapping.total_fields.ignore_dynamic_beyond_limit": true})
            .as_object()
            .cloned()
            .unwrap(),
        )
        .unwrap();
        ignore
            .index_document(&json!({"a": 1, "b": 2}), "1")
            .unwrap();
        assert_eq!(ignore.field_type("b"), None);
        let mut strict =
            mapping(json!({"dynamic": "strict", "properties": {"a": {"type": "long"}}}));
        let error = strict.index_document(&json!({"z": 1}), "1").unwrap_err();
        assert_eq!(error.kind, "strict_dynamic_mapping_exception");
    }

    #[test]
    fn dates_and_globs() {
        for good in [
            "2024",
            "2024-02",
            "2024-02-29",
            "2023-11-14T22:13:20.123Z",
            "2023-11-14T22:13+01:00",
        ] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "yesterday",
            "2023-11-14T25:00Z",
            "2023-11-14 22:13",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
        assert!(glob_match("tracker-events-*", "tracker-events-2024.01.01"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b", "ab-c"));
    }
}
