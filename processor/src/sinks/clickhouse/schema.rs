//! The ClickHouse schema: the events table and the dashboards' materialized views, as DDL that
//! runs on ClickHouse 18.16 and on current releases (no `DateTime64`, no `LowCardinality`, no
//! `JSON` type, sorting keys without `Nullable` columns).
//!
//! # The events table
//!
//! - One typed column per atomic field of the enriched event, in Snowplow's order: text
//!   `Nullable(String)`, integers `Nullable(Int32)`, decimals `Nullable(Float64)`, booleans
//!   `Nullable(UInt8)`; `app_id`, `event` and `event_id` are plain `String` (in the sorting key,
//!   `''` when absent).
//! - Timestamps: `DateTime('UTC')` (seconds) plus a `<name>_ms` `UInt16` column with the
//!   milliseconds, since 18.16 has no `DateTime64`: `collector_tstamp` and
//!   `collector_tstamp_ms` together are the exact instant.
//! - `contexts`: every entity group of the JSON document (`contexts_<vendor>_<name>_<major>`,
//!   the tracker's and the enrichments' alike) as one JSON object string, `'{}'` when there is
//!   none; `unstruct_event`: `{"unstruct_event_<vendor>_<name>_<major>": {...}}` or `'{}'`. Both
//!   are queryable with `visitParamExtract*` (18.16) or `JSONExtract*` (19.x+).
//! - Extracted columns for the common entities: `web_page_id` (the `web_page` context's id),
//!   `ua_*` (the `ua_parser_context`), `iab_*` (the `spiders_and_robots` context).
//! - `ReplacingMergeTree`, `PARTITION BY toYYYYMM(collector_tstamp)`,
//!   `ORDER BY (app_id, toDate(collector_tstamp), event, event_id)`: every value in the key is the
//!   same for every delivery of one event (its `event_id` is the tracker's or derived from the raw
//!   line; `collector_tstamp` comes from the line; `etl_tstamp` is *not* in the key), so
//!   re-deliveries collapse into one row, at merge time or at once under `FINAL`.
//!
//! # The dashboards' materialized views
//!
//! `<table>_page_views_hourly`, `<table>_page_views_by_page`, `<table>_page_views_by_referer`,
//! `<table>_sessions_daily`: `AggregatingMergeTree` tables of `uniqExactState(event_id)`,
//! `uniqExactState(domain_sessionid)` and `uniqState(domain_userid)`. They count *distinct* ids, so
//! a batch delivered twice does not count twice: read them with `uniqExactMerge`/`uniqMerge`
//! grouped by their key.
//!
//! # The bad-rows table
//!
//! `<bad_rows_table>` (default `bad_rows`): one row per Snowplow bad row the loader read
//! ([`BAD_ROWS_COLUMNS`]): `schema`, `type` (the schema's name), `failure_tstamp` +
//! `failure_tstamp_ms` (`data.failure.timestamp`, else the load time), the processor, `failure`
//! and `payload` as text, and `row_id`, the SHA-256 of the whole document.
//! `ReplacingMergeTree`, `PARTITION BY toYYYYMM(failure_tstamp)`,
//! `ORDER BY (type, toDate(failure_tstamp), row_id)`: a bad row delivered twice is one row under
//! `FINAL` (a row without a failure timestamp takes the load time, so two deliveries on different
//! days stay two rows; the processor and the loaders always write the timestamp).

use super::config::ClickHouseConfig;

/// A column's ClickHouse type, as the encoder writes it in RowBinary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `String`, `''` when absent.
    String,
    /// `Nullable(String)`.
    NullableString,
    /// `Nullable(Int32)`.
    NullableInt32,
    /// `Nullable(Float64)`.
    NullableFloat64,
    /// `Nullable(UInt8)`, for booleans.
    NullableUInt8,
    /// `DateTime('UTC')`, seconds since the epoch.
    DateTime,
    /// `Nullable(DateTime('UTC'))`.
    NullableDateTime,
    /// `UInt16`: the milliseconds of the timestamp column before it.
    UInt16,
    /// `Nullable(UInt16)`: the milliseconds of the timestamp column before it.
    NullableUInt16,
    /// `String` holding a JSON object, `'{}'` when empty.
    Json,
}

impl ColumnType {
    /// The type in DDL.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::String | ColumnType::Json => "String",
            ColumnType::NullableString => "Nullable(String)",
            ColumnType::NullableInt32 => "Nullable(Int32)",
            ColumnType::NullableFloat64 => "Nullable(Float64)",
            ColumnType::NullableUInt8 => "Nullable(UInt8)",
            ColumnType::DateTime => "DateTime('UTC')",
            ColumnType::NullableDateTime => "Nullable(DateTime('UTC'))",
            ColumnType::UInt16 => "UInt16",
            ColumnType::NullableUInt16 => "Nullable(UInt16)",
        }
    }
}

/// One column of the events table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name: the enriched event's field name, or an extracted column's.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

/// The columns of the events table, in insertion order.
pub const COLUMNS: [Column; 145] = [
    col("app_id", ColumnType::String),
    col("platform", ColumnType::NullableString),
    col("etl_tstamp", ColumnType::NullableDateTime),
    col("etl_tstamp_ms", ColumnType::NullableUInt16),
    col("collector_tstamp", ColumnType::DateTime),
    col("collector_tstamp_ms", ColumnType::UInt16),
    col("dvce_created_tstamp", ColumnType::NullableDateTime),
    col("dvce_created_tstamp_ms", ColumnType::NullableUInt16),
    col("event", ColumnType::String),
    col("event_id", ColumnType::String),
    col("txn_id", ColumnType::NullableInt32),
    col("name_tracker", ColumnType::NullableString),
    col("v_tracker", ColumnType::NullableString),
    col("v_collector", ColumnType::NullableString),
    col("v_etl", ColumnType::NullableString),
    col("user_id", ColumnType::NullableString),
    col("user_ipaddress", ColumnType::NullableString),
    col("user_fingerprint", ColumnType::NullableString),
    col("domain_userid", ColumnType::NullableString),
    col("domain_sessionidx", ColumnType::NullableInt32),
    col("network_userid", ColumnType::NullableString),
    col("geo_country", ColumnType::NullableString),
    col("geo_region", ColumnType::NullableString),
    col("geo_city", ColumnType::NullableString),
    col("geo_zipcode", ColumnType::NullableString),
    col("geo_latitude", ColumnType::NullableFloat64),
    col("geo_longitude", ColumnType::NullableFloat64),
    col("geo_region_name", ColumnType::NullableString),
    col("ip_isp", ColumnType::NullableString),
    col("ip_organization", ColumnType::NullableString),
    col("ip_domain", ColumnType::NullableString),
    col("ip_netspeed", ColumnType::NullableString),
    col("page_url", ColumnType::NullableString),
    col("page_title", ColumnType::NullableString),
    col("page_referrer", ColumnType::NullableString),
    col("page_urlscheme", ColumnType::NullableString),
    col("page_urlhost", ColumnType::NullableString),
    col("page_urlport", ColumnType::NullableInt32),
    col("page_urlpath", ColumnType::NullableString),
    col("page_urlquery", ColumnType::NullableString),
    col("page_urlfragment", ColumnType::NullableString),
    col("refr_urlscheme", ColumnType::NullableString),
    col("refr_urlhost", ColumnType::NullableString),
    col("refr_urlport", ColumnType::NullableInt32),
    col("refr_urlpath", ColumnType::NullableString),
    col("refr_urlquery", ColumnType::NullableString),
    col("refr_urlfragment", ColumnType::NullableString),
    col("refr_medium", ColumnType::NullableString),
    col("refr_source", ColumnType::NullableString),
    col("refr_term", ColumnType::NullableString),
    col("mkt_medium", ColumnType::NullableString),
    col("mkt_source", ColumnType::NullableString),
    col("mkt_term", ColumnType::NullableString),
    col("mkt_content", ColumnType::NullableString),
    col("mkt_campaign", ColumnType::NullableString),
    col("contexts", ColumnType::Json),
    col("se_category", ColumnType::NullableString),
    col("se_action", ColumnType::NullableString),
    col("se_label", ColumnType::NullableString),
    col("se_property", ColumnType::NullableString),
    col("se_value", ColumnType::NullableFloat64),
    col("unstruct_event", ColumnType::Json),
    col("tr_orderid", ColumnType::NullableString),
    col("tr_affiliation", ColumnType::NullableString),
    col("tr_total", ColumnType::NullableFloat64),
    col("tr_tax", ColumnType::NullableFloat64),
    col("tr_shipping", ColumnType::NullableFloat64),
    col("tr_city", ColumnType::NullableString),
    col("tr_state", ColumnType::NullableString),
    col("tr_country", ColumnType::NullableString),
    col("ti_orderid", ColumnType::NullableString),
    col("ti_sku", ColumnType::NullableString),
    col("ti_name", ColumnType::NullableString),
    col("ti_category", ColumnType::NullableString),
    col("ti_price", ColumnType::NullableFloat64),
    col("ti_quantity", ColumnType::NullableInt32),
    col("pp_xoffset_min", ColumnType::NullableInt32),
    col("pp_xoffset_max", ColumnType::NullableInt32),
    col("pp_yoffset_min", ColumnType::NullableInt32),
    col("pp_yoffset_max", ColumnType::NullableInt32),
    col("useragent", ColumnType::NullableString),
    col("br_name", ColumnType::NullableString),
    col("br_family", ColumnType::NullableString),
    col("br_version", ColumnType::NullableString),
    col("br_type", ColumnType::NullableString),
    col("br_renderengine", ColumnType::NullableString),
    col("br_lang", ColumnType::NullableString),
    col("br_features_pdf", ColumnType::NullableUInt8),
    col("br_features_flash", ColumnType::NullableUInt8),
    col("br_features_java", ColumnType::NullableUInt8),
    col("br_features_director", ColumnType::NullableUInt8),
    col("br_features_quicktime", ColumnType::NullableUInt8),
    col("br_features_realplayer", ColumnType::NullableUInt8),
    col("br_features_windowsmedia", ColumnType::NullableUInt8),
    col("br_features_gears", ColumnType::NullableUInt8),
    col("br_features_silverlight", ColumnType::NullableUInt8),
    col("br_cookies", ColumnType::NullableUInt8),
    col("br_colordepth", ColumnType::NullableString),
    col("br_viewwidth", ColumnType::NullableInt32),
    col("br_viewheight", ColumnType::NullableInt32),
    col("os_name", ColumnType::NullableString),
    col("os_family", ColumnType::NullableString),
    col("os_manufacturer", ColumnType::NullableString),
    col("os_timezone", ColumnType::NullableString),
    col("dvce_type", ColumnType::NullableString),
    col("dvce_ismobile", ColumnType::NullableUInt8),
    col("dvce_screenwidth", ColumnType::NullableInt32),
    col("dvce_screenheight", ColumnType::NullableInt32),
    col("doc_charset", ColumnType::NullableString),
    col("doc_width", ColumnType::NullableInt32),
    col("doc_height", ColumnType::NullableInt32),
    col("tr_currency", ColumnType::NullableString),
    col("tr_total_base", ColumnType::NullableFloat64),
    col("tr_tax_base", ColumnType::NullableFloat64),
    col("tr_shipping_base", ColumnType::NullableFloat64),
    col("ti_currency", ColumnType::NullableString),
    col("ti_price_base", ColumnType::NullableFloat64),
    col("base_currency", ColumnType::NullableString),
    col("geo_timezone", ColumnType::NullableString),
    col("mkt_clickid", ColumnType::NullableString),
    col("mkt_network", ColumnType::NullableString),
    col("etl_tags", ColumnType::NullableString),
    col("dvce_sent_tstamp", ColumnType::NullableDateTime),
    col("dvce_sent_tstamp_ms", ColumnType::NullableUInt16),
    col("refr_domain_userid", ColumnType::NullableString),
    col("refr_dvce_tstamp", ColumnType::NullableDateTime),
    col("refr_dvce_tstamp_ms", ColumnType::NullableUInt16),
    col("domain_sessionid", ColumnType::NullableString),
    col("derived_tstamp", ColumnType::NullableDateTime),
    col("derived_tstamp_ms", ColumnType::NullableUInt16),
    col("event_vendor", ColumnType::NullableString),
    col("event_name", ColumnType::NullableString),
    col("event_format", ColumnType::NullableString),
    col("event_version", ColumnType::NullableString),
    col("event_fingerprint", ColumnType::NullableString),
    col("true_tstamp", ColumnType::NullableDateTime),
    col("true_tstamp_ms", ColumnType::NullableUInt16),
    col("web_page_id", ColumnType::NullableString),
    col("ua_useragent_family", ColumnType::NullableString),
    col("ua_useragent_version", ColumnType::NullableString),
    col("ua_os_family", ColumnType::NullableString),
    col("ua_os_version", ColumnType::NullableString),
    col("ua_device_family", ColumnType::NullableString),
    col("iab_category", ColumnType::NullableString),
    col("iab_spider_or_robot", ColumnType::NullableUInt8),
];

/// The column names, in [`COLUMNS`] order (the insert's column list).
pub const COLUMN_NAMES: [&str; COLUMNS.len()] = {
    let mut names = [""; COLUMNS.len()];
    let mut i = 0;
    while i < COLUMNS.len() {
        names[i] = COLUMNS[i].name;
        i += 1;
    }
    names
};

/// The statements that create the database, the events table and the materialized views, each
/// `IF NOT EXISTS`, in order. `database` and `table` are identifiers (checked by the config).
pub fn ddl(database: &str, table: &str) -> Vec<String> {
    let mut columns = String::new();
    for (i, column) in COLUMNS.iter().enumerate() {
        if i > 0 {
            columns.push_str(",\n");
        }
        columns.push_str("    ");
        columns.push_str(column.name);
        columns.push(' ');
        columns.push_str(column.ty.sql());
    }
    let t = format!("{database}.{table}");
    let view = |name: &str, engine_key: &str, select: &str| {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {t}_{name}\n\
             ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY ({engine_key})\n\
             AS {select}"
        )
    };
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {database}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n{columns}\n)\n\
             ENGINE = ReplacingMergeTree()\n\
             PARTITION BY toYYYYMM(collector_tstamp)\n\
             ORDER BY (app_id, toDate(collector_tstamp), event, event_id)"
        ),
        view(
            "page_views_hourly",
            "app_id, hour",
            &format!(
                "SELECT app_id, toDate(collector_tstamp) AS day, \
                 toStartOfHour(collector_tstamp) AS hour, \
                 uniqExactState(event_id) AS page_views, \
                 uniqExactState(ifNull(domain_sessionid, '')) AS sessions, \
                 uniqState(ifNull(domain_userid, '')) AS visitors \
                 FROM {t} WHERE event = 'page_view' GROUP BY app_id, day, hour"
            ),
        ),
        view(
            "page_views_by_page",
            "app_id, day, page_urlhost, page_urlpath",
            &format!(
                "SELECT app_id, toDate(collector_tstamp) AS day, \
                 ifNull(page_urlhost, '') AS page_urlhost, \
                 ifNull(page_urlpath, '') AS page_urlpath, \
                 any(ifNull(page_title, '')) AS page_title, \
                 uniqExactState(event_id) AS page_views \
                 FROM {t} WHERE event = 'page_view' \
                 GROUP BY app_id, day, page_urlhost, page_urlpath"
            ),
        ),
        view(
            "page_views_by_referer",
            "app_id, day, refr_medium, refr_source, mkt_medium, mkt_source, mkt_campaign",
            &format!(
                "SELECT app_id, toDate(collector_tstamp) AS day, \
                 ifNull(refr_medium, '') AS refr_medium, ifNull(refr_source, '') AS refr_source, \
                 ifNull(mkt_medium, '') AS mkt_medium, ifNull(mkt_source, '') AS mkt_source, \
                 ifNull(mkt_campaign, '') AS mkt_campaign, \
                 uniqExactState(event_id) AS page_views, \
                 uniqExactState(ifNull(domain_sessionid, '')) AS sessions \
                 FROM {t} WHERE event = 'page_view' \
                 GROUP BY app_id, day, refr_medium, refr_source, mkt_medium, mkt_source, mkt_campaign"
            ),
        ),
        view(
            "sessions_daily",
            "app_id, day",
            &format!(
                "SELECT app_id, toDate(collector_tstamp) AS day, \
                 uniqExactState(event_id) AS events, \
                 uniqExactState(ifNull(domain_sessionid, '')) AS sessions, \
                 uniqState(ifNull(domain_userid, '')) AS visitors \
                 FROM {t} GROUP BY app_id, day"
            ),
        ),
    ]
}

/// The columns of the bad-rows table, in insertion order (`BadRowRow`'s fields).
pub const BAD_ROWS_COLUMNS: [Column; 9] = [
    col("schema", ColumnType::String),
    col("type", ColumnType::String),
    col("failure_tstamp", ColumnType::DateTime),
    col("failure_tstamp_ms", ColumnType::UInt16),
    col("processor_artifact", ColumnType::String),
    col("processor_version", ColumnType::String),
    col("failure", ColumnType::Json),
    col("payload", ColumnType::String),
    col("row_id", ColumnType::String),
];

/// The bad-rows column names, in [`BAD_ROWS_COLUMNS`] order.
pub const BAD_ROWS_COLUMN_NAMES: [&str; BAD_ROWS_COLUMNS.len()] = {
    let mut names = [""; BAD_ROWS_COLUMNS.len()];
    let mut i = 0;
    while i < BAD_ROWS_COLUMNS.len() {
        names[i] = BAD_ROWS_COLUMNS[i].name;
        i += 1;
    }
    names
};

/// The statement that creates the bad-rows table `database.table`, `IF NOT EXISTS`.
pub fn bad_rows_ddl(database: &str, table: &str) -> String {
    let columns: Vec<String> = BAD_ROWS_COLUMNS
        .iter()
        .map(|c| format!("    {} {}", c.name, c.ty.sql()))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} (\n{}\n)\n\
         ENGINE = ReplacingMergeTree()\n\
         PARTITION BY toYYYYMM(failure_tstamp)\n\
         ORDER BY (type, toDate(failure_tstamp), row_id)",
        columns.join(",\n")
    )
}

/// Every statement of the configured schema, in order: [`ddl`] (the database, the events table,
/// the views), then [`bad_rows_ddl`]. `config` is validated (identifiers).
pub fn statements(config: &ClickHouseConfig) -> Vec<String> {
    let mut out = ddl(&config.database, &config.table);
    out.push(bad_rows_ddl(&config.database, &config.bad_rows_table));
    out
}

/// [`statements`] as one script (what `plow-processor schema clickhouse` prints): statements
/// separated by `;` and a blank line.
pub fn script(config: &ClickHouseConfig) -> String {
    let mut out = String::new();
    for statement in statements(config) {
        out.push_str(&statement);
        out.push_str(";\n\n");
    }
    out
}

/// [`ddl`] as one script: statements separated by `;` and a blank line.
pub fn ddl_script(database: &str, table: &str) -> String {
    let mut out = String::new();
    for statement in ddl(database, table) {
        out.push_str(&statement);
        out.push_str(";\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldVisitor, FIELD_NAMES};
    use crate::EnrichedEvent;
    use plowline_collector::tracker::SelfDescribing;

    /// The kinds the enriched event declares for its fields.
    #[derive(Default)]
    struct Kinds(Vec<(&'static str, &'static str)>);

    impl FieldVisitor for Kinds {
        fn text(&mut self, name: &'static str, _: Option<&str>) {
            self.0.push((name, "text"));
        }
        fn int(&mut self, name: &'static str, _: Option<i32>) {
            self.0.push((name, "int"));
        }
        fn decimal(&mut self, name: &'static str, _: Option<f64>) {
            self.0.push((name, "decimal"));
        }
        fn boolean(&mut self, name: &'static str, _: Option<bool>) {
            self.0.push((name, "boolean"));
        }
        fn tstamp(&mut self, name: &'static str, _: Option<i64>) {
            self.0.push((name, "tstamp"));
        }
        fn contexts(&mut self, name: &'static str, _: &[SelfDescribing]) {
            self.0.push((name, "contexts"));
        }
        fn unstruct(&mut self, name: &'static str, _: Option<&SelfDescribing>) {
            self.0.push((name, "unstruct"));
        }
    }

    #[test]
    fn every_atomic_field_has_a_column_of_its_kind() {
        let mut kinds = Kinds::default();
        EnrichedEvent::default().visit(&mut kinds);
        assert_eq!(kinds.0.len(), FIELD_NAMES.len());
        for (name, kind) in kinds.0 {
            if name == "derived_contexts" {
                // Merged into `contexts` by the JSON format.
                continue;
            }
            let column = COLUMNS
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("no column for {name}"));
            let expected: &[ColumnType] = match kind {
                "text" => &[ColumnType::String, ColumnType::NullableString],
                "int" => &[ColumnType::NullableInt32],
                "decimal" => &[ColumnType::NullableFloat64],
                "boolean" => &[ColumnType::NullableUInt8],
                "tstamp" => &[ColumnType::DateTime, ColumnType::NullableDateTime],
                _ => &[ColumnType::Json],
            };
            assert!(expected.contains(&column.ty), "{name}: {:?}", column.ty);
        }
        let mut names: Vec<_> = COLUMN_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len(), "column names are unique");
    }

    #[test]
    fn the_sorting_key_has_no_nullable_column_and_no_etl_tstamp() {
        let script = ddl_script("plowline", "events");
        let key = script
            .split("ORDER BY (")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap();
        assert!(!key.contains("etl_tstamp"), "{key}");
        for name in ["app_id", "event", "event_id", "collector_tstamp"] {
            let column = COLUMNS.iter().find(|c| c.name == name).unwrap();
            assert!(!column.ty.sql().starts_with("Nullable"), "{name}");
        }
        assert!(script.contains("CREATE TABLE IF NOT EXISTS plowline.events ("));
        assert!(script.contains("ReplacingMergeTree"));
    }

    #[test]
    fn the_script_creates_the_bad_rows_table_keyed_by_type_day_and_hash() {
        let config = ClickHouseConfig {
            bad_rows_table: "bad".into(),
            ..ClickHouseConfig::default()
        };
        let script = script(&config);
        assert!(script.starts_with(&ddl_script("plowline", "events")));
        let bad = script
            .split("CREATE TABLE IF NOT EXISTS plowline.bad (")
            .nth(1)
            .unwrap();
        for column in [
            "schema String",
            "type String",
            "failure_tstamp DateTime('UTC')",
            "failure_tstamp_ms UInt16",
            "row_id String",
            "payload String",
            "failure String",
        ] {
            assert!(bad.contains(column), "{column}");
        }
        assert!(bad.contains("ORDER BY (type, toDate(failure_tstamp), row_id)"));
        assert!(bad.contains("ReplacingMergeTree"));
    }
}
