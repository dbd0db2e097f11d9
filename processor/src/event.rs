//! The enriched event: Snowplow's 131 canonical fields, in TSV order.
//!
//! Field names are Snowplow's own, so that the JSON and TSV outputs, the ClickHouse columns and
//! the Elasticsearch mappings all speak the same names. Timestamps are milliseconds since the Unix
//! epoch (UTC); absent values are `None`; contexts and the unstruct event stay self-describing.

use std::borrow::Cow;

use plowline_collector::tracker::SelfDescribing;

/// The canonical field names, in the order of Snowplow's enriched TSV.
pub const FIELD_NAMES: [&str; 131] = [
    "app_id",
    "platform",
    "etl_tstamp",
    "collector_tstamp",
    "dvce_created_tstamp",
    "event",
    "event_id",
    "txn_id",
    "name_tracker",
    "v_tracker",
    "v_collector",
    "v_etl",
    "user_id",
    "user_ipaddress",
    "user_fingerprint",
    "domain_userid",
    "domain_sessionidx",
    "network_userid",
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_zipcode",
    "geo_latitude",
    "geo_longitude",
    "geo_region_name",
    "ip_isp",
    "ip_organization",
    "ip_domain",
    "ip_netspeed",
    "page_url",
    "page_title",
    "page_referrer",
    "page_urlscheme",
    "page_urlhost",
    "page_urlport",
    "page_urlpath",
    "page_urlquery",
    "page_urlfragment",
    "refr_urlscheme",
    "refr_urlhost",
    "refr_urlport",
    "refr_urlpath",
    "refr_urlquery",
    "refr_urlfragment",
    "refr_medium",
    "refr_source",
    "refr_term",
    "mkt_medium",
    "mkt_source",
    "mkt_term",
    "mkt_content",
    "mkt_campaign",
    "contexts",
    "se_category",
    "se_action",
    "se_label",
    "se_property",
    "se_value",
    "unstruct_event",
    "tr_orderid",
    "tr_affiliation",
    "tr_total",
    "tr_tax",
    "tr_shipping",
    "tr_city",
    "tr_state",
    "tr_country",
    "ti_orderid",
    "ti_sku",
    "ti_name",
    "ti_category",
    "ti_price",
    "ti_quantity",
    "pp_xoffset_min",
    "pp_xoffset_max",
    "pp_yoffset_min",
    "pp_yoffset_max",
    "useragent",
    "br_name",
    "br_family",
    "br_version",
    "br_type",
    "br_renderengine",
    "br_lang",
    "br_features_pdf",
    "br_features_flash",
    "br_features_java",
    "br_features_director",
    "br_features_quicktime",
    "br_features_realplayer",
    "br_features_windowsmedia",
    "br_features_gears",
    "br_features_silverlight",
    "br_cookies",
    "br_colordepth",
    "br_viewwidth",
    "br_viewheight",
    "os_name",
    "os_family",
    "os_manufacturer",
    "os_timezone",
    "dvce_type",
    "dvce_ismobile",
    "dvce_screenwidth",
    "dvce_screenheight",
    "doc_charset",
    "doc_width",
    "doc_height",
    "tr_currency",
    "tr_total_base",
    "tr_tax_base",
    "tr_shipping_base",
    "ti_currency",
    "ti_price_base",
    "base_currency",
    "geo_timezone",
    "mkt_clickid",
    "mkt_network",
    "etl_tags",
    "dvce_sent_tstamp",
    "refr_domain_userid",
    "refr_dvce_tstamp",
    "derived_contexts",
    "domain_sessionid",
    "derived_tstamp",
    "event_vendor",
    "event_name",
    "event_format",
    "event_version",
    "event_fingerprint",
    "true_tstamp",
];

/// One enriched event. Filled by the processor from a hit and its tracker parameters, then by
/// the enrichments.
///
/// Text fields are [`Cow`]s: an event borrows what it copies unchanged from the line and its
/// decoded parameters (`'a`), and the constants (`platform`, `event`, `v_etl`, …), instead of
/// allocating a copy of each; what is derived (UUID strings, enrichments' values) is owned.
/// [`EnrichedEvent::into_owned`] detaches an event from its line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EnrichedEvent<'a> {
    pub app_id: Option<Cow<'a, str>>,
    pub platform: Option<Cow<'a, str>>,
    pub etl_tstamp: Option<i64>,
    pub collector_tstamp: i64,
    pub dvce_created_tstamp: Option<i64>,
    pub event: Option<Cow<'a, str>>,
    pub event_id: Option<Cow<'a, str>>,
    pub txn_id: Option<i32>,
    pub name_tracker: Option<Cow<'a, str>>,
    pub v_tracker: Option<Cow<'a, str>>,
    pub v_collector: Option<Cow<'a, str>>,
    pub v_etl: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub user_ipaddress: Option<Cow<'a, str>>,
    pub user_fingerprint: Option<Cow<'a, str>>,
    pub domain_userid: Option<Cow<'a, str>>,
    pub domain_sessionidx: Option<i32>,
    pub network_userid: Option<Cow<'a, str>>,
    pub geo_country: Option<Cow<'a, str>>,
    pub geo_region: Option<Cow<'a, str>>,
    pub geo_city: Option<Cow<'a, str>>,
    pub geo_zipcode: Option<Cow<'a, str>>,
    pub geo_latitude: Option<f64>,
    pub geo_longitude: Option<f64>,
    pub geo_region_name: Option<Cow<'a, str>>,
    pub ip_isp: Option<Cow<'a, str>>,
    pub ip_organization: Option<Cow<'a, str>>,
    pub ip_domain: Option<Cow<'a, str>>,
    pub ip_netspeed: Option<Cow<'a, str>>,
    pub page_url: Option<Cow<'a, str>>,
    pub page_title: Option<Cow<'a, str>>,
    pub page_referrer: Option<Cow<'a, str>>,
    pub page_urlscheme: Option<Cow<'a, str>>,
    pub page_urlhost: Option<Cow<'a, str>>,
    pub page_urlport: Option<i32>,
    pub page_urlpath: Option<Cow<'a, str>>,
    pub page_urlquery: Option<Cow<'a, str>>,
    pub page_urlfragment: Option<Cow<'a, str>>,
    pub refr_urlscheme: Option<Cow<'a, str>>,
    pub refr_urlhost: Option<Cow<'a, str>>,
    pub refr_urlport: Option<i32>,
    pub refr_urlpath: Option<Cow<'a, str>>,
    pub refr_urlquery: Option<Cow<'a, str>>,
    pub refr_urlfragment: Option<Cow<'a, str>>,
    pub refr_medium: Option<Cow<'a, str>>,
    pub refr_source: Option<Cow<'a, str>>,
    pub refr_term: Option<Cow<'a, str>>,
    pub mkt_medium: Option<Cow<'a, str>>,
    pub mkt_source: Option<Cow<'a, str>>,
    pub mkt_term: Option<Cow<'a, str>>,
    pub mkt_content: Option<Cow<'a, str>>,
    pub mkt_campaign: Option<Cow<'a, str>>,
    pub contexts: Vec<SelfDescribing>,
    pub se_category: Option<Cow<'a, str>>,
    pub se_action: Option<Cow<'a, str>>,
    pub se_label: Option<Cow<'a, str>>,
    pub se_property: Option<Cow<'a, str>>,
    pub se_value: Option<f64>,
    pub unstruct_event: Option<SelfDescribing>,
    pub tr_orderid: Option<Cow<'a, str>>,
    pub tr_affiliation: Option<Cow<'a, str>>,
    pub tr_total: Option<f64>,
    pub tr_tax: Option<f64>,
    pub tr_shipping: Option<f64>,
    pub tr_city: Option<Cow<'a, str>>,
    pub tr_state: Option<Cow<'a, str>>,
    pub tr_country: Option<Cow<'a, str>>,
    pub ti_orderid: Option<Cow<'a, str>>,
    pub ti_sku: Option<Cow<'a, str>>,
    pub ti_name: Option<Cow<'a, str>>,
    pub ti_category: Option<Cow<'a, str>>,
    pub ti_price: Option<f64>,
    pub ti_quantity: Option<i32>,
    pub pp_xoffset_min: Option<i32>,
    pub pp_xoffset_max: Option<i32>,
    pub pp_yoffset_min: Option<i32>,
    pub pp_yoffset_max: Option<i32>,
    pub useragent: Option<Cow<'a, str>>,
    pub br_name: Option<Cow<'a, str>>,
    pub br_family: Option<Cow<'a, str>>,
    pub br_version: Option<Cow<'a, str>>,
    pub br_type: Option<Cow<'a, str>>,
    pub br_renderengine: Option<Cow<'a, str>>,
    pub br_lang: Option<Cow<'a, str>>,
    pub br_features_pdf: Option<bool>,
    pub br_features_flash: Option<bool>,
    pub br_features_java: Option<bool>,
    pub br_features_director: Option<bool>,
    pub br_features_quicktime: Option<bool>,
    pub br_features_realplayer: Option<bool>,
    pub br_features_windowsmedia: Option<bool>,
    pub br_features_gears: Option<bool>,
    pub br_features_silverlight: Option<bool>,
    pub br_cookies: Option<bool>,
    pub br_colordepth: Option<Cow<'a, str>>,
    pub br_viewwidth: Option<i32>,
    pub br_viewheight: Option<i32>,
    pub os_name: Option<Cow<'a, str>>,
    pub os_family: Option<Cow<'a, str>>,
    pub os_manufacturer: Option<Cow<'a, str>>,
    pub os_timezone: Option<Cow<'a, str>>,
    pub dvce_type: Option<Cow<'a, str>>,
    pub dvce_ismobile: Option<bool>,
    pub dvce_screenwidth: Option<i32>,
    pub dvce_screenheight: Option<i32>,
    pub doc_charset: Option<Cow<'a, str>>,
    pub doc_width: Option<i32>,
    pub doc_height: Option<i32>,
    pub tr_currency: Option<Cow<'a, str>>,
    pub tr_total_base: Option<f64>,
    pub tr_tax_base: Option<f64>,
    pub tr_shipping_base: Option<f64>,
    pub ti_currency: Option<Cow<'a, str>>,
    pub ti_price_base: Option<f64>,
    pub base_currency: Option<Cow<'a, str>>,
    pub geo_timezone: Option<Cow<'a, str>>,
    pub mkt_clickid: Option<Cow<'a, str>>,
    pub mkt_network: Option<Cow<'a, str>>,
    pub etl_tags: Option<Cow<'a, str>>,
    pub dvce_sent_tstamp: Option<i64>,
    pub refr_domain_userid: Option<Cow<'a, str>>,
    pub refr_dvce_tstamp: Option<i64>,
    pub derived_contexts: Vec<SelfDescribing>,
    pub domain_sessionid: Option<Cow<'a, str>>,
    pub derived_tstamp: Option<i64>,
    pub event_vendor: Option<Cow<'a, str>>,
    pub event_name: Option<Cow<'a, str>>,
    pub event_format: Option<Cow<'a, str>>,
    pub event_version: Option<Cow<'a, str>>,
    pub event_fingerprint: Option<Cow<'a, str>>,
    pub true_tstamp: Option<i64>,
}

/// Receives the fields of an [`EnrichedEvent`] one by one, in [`FIELD_NAMES`] order, typed: the
/// single place the outputs (JSON, TSV) learn the field list from.
pub trait FieldVisitor {
    /// A text field.
    fn text(&mut self, name: &'static str, value: Option<&str>);
    /// An integer field.
    fn int(&mut self, name: &'static str, value: Option<i32>);
    /// A decimal field.
    fn decimal(&mut self, name: &'static str, value: Option<f64>);
    /// A boolean field.
    fn boolean(&mut self, name: &'static str, value: Option<bool>);
    /// A timestamp, in ms since the Unix epoch (UTC).
    fn tstamp(&mut self, name: &'static str, value: Option<i64>);
    /// `contexts` or `derived_contexts`: self-describing entities.
    fn contexts(&mut self, name: &'static str, value: &[SelfDescribing]);
    /// `unstruct_event`: the self-describing event.
    fn unstruct(&mut self, name: &'static str, value: Option<&SelfDescribing>);
}

impl EnrichedEvent<'_> {
    /// The key a good event is produced with: `domain_userid`, else `network_userid`, so that one
    /// user's events stay in one partition, in order.
    pub fn partition_key(&self) -> Option<&str> {
        self.domain_userid
            .as_deref()
            .or(self.network_userid.as_deref())
    }

    /// The event with every text field owned, free of the line it was read from.
    pub fn into_owned(self) -> EnrichedEvent<'static> {
        fn owned(text: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            text.map(|text| Cow::Owned(text.into_owned()))
        }
        EnrichedEvent {
            app_id: owned(self.app_id),
            platform: owned(self.platform),
            etl_tstamp: self.etl_tstamp,
            collector_tstamp: self.collector_tstamp,
            dvce_created_tstamp: self.dvce_created_tstamp,
            event: owned(self.event),
            event_id: owned(self.event_id),
            txn_id: self.txn_id,
            name_tracker: owned(self.name_tracker),
            v_tracker: owned(self.v_tracker),
            v_collector: owned(self.v_collector),
            v_etl: owned(self.v_etl),
            user_id: owned(self.user_id),
            user_ipaddress: owned(self.user_ipaddress),
            user_fingerprint: owned(self.user_fingerprint),
            domain_userid: owned(self.domain_userid),
            domain_sessionidx: self.domain_sessionidx,
            network_userid: owned(self.network_userid),
            geo_country: owned(self.geo_country),
            geo_region: owned(self.geo_region),
            geo_city: owned(self.geo_city),
            geo_zipcode: owned(self.geo_zipcode),
            geo_latitude: self.geo_latitude,
            geo_longitude: self.geo_longitude,
            geo_region_name: owned(self.geo_region_name),
            ip_isp: owned(self.ip_isp),
            ip_organization: owned(self.ip_organization),
            ip_domain: owned(self.ip_domain),
            ip_netspeed: owned(self.ip_netspeed),
            page_url: owned(self.page_url),
            page_title: owned(self.page_title),
            page_referrer: owned(self.page_referrer),
            page_urlscheme: owned(self.page_urlscheme),
            page_urlhost: owned(self.page_urlhost),
            page_urlport: self.page_urlport,
            page_urlpath: owned(self.page_urlpath),
            page_urlquery: owned(self.page_urlquery),
            page_urlfragment: owned(self.page_urlfragment),
            refr_urlscheme: owned(self.refr_urlscheme),
            refr_urlhost: owned(self.refr_urlhost),
            refr_urlport: self.refr_urlport,
            refr_urlpath: owned(self.refr_urlpath),
            refr_urlquery: owned(self.refr_urlquery),
            refr_urlfragment: owned(self.refr_urlfragment),
            refr_medium: owned(self.refr_medium),
            refr_source: owned(self.refr_source),
            refr_term: owned(self.refr_term),
            mkt_medium: owned(self.mkt_medium),
            mkt_source: owned(self.mkt_source),
            mkt_term: owned(self.mkt_term),
            mkt_content: owned(self.mkt_content),
            mkt_campaign: owned(self.mkt_campaign),
            contexts: self.contexts,
            se_category: owned(self.se_category),
            se_action: owned(self.se_action),
            se_label: owned(self.se_label),
            se_property: owned(self.se_property),
            se_value: self.se_value,
            unstruct_event: self.unstruct_event,
            tr_orderid: owned(self.tr_orderid),
            tr_affiliation: owned(self.tr_affiliation),
            tr_total: self.tr_total,
            tr_tax: self.tr_tax,
            tr_shipping: self.tr_shipping,
            tr_city: owned(self.tr_city),
            tr_state: owned(self.tr_state),
            tr_country: owned(self.tr_country),
            ti_orderid: owned(self.ti_orderid),
            ti_sku: owned(self.ti_sku),
            ti_name: owned(self.ti_name),
            ti_category: owned(self.ti_category),
            ti_price: self.ti_price,
            ti_quantity: self.ti_quantity,
            pp_xoffset_min: self.pp_xoffset_min,
            pp_xoffset_max: self.pp_xoffset_max,
            pp_yoffset_min: self.pp_yoffset_min,
            pp_yoffset_max: self.pp_yoffset_max,
            useragent: owned(self.useragent),
            br_name: owned(self.br_name),
            br_family: owned(self.br_family),
            br_version: owned(self.br_version),
            br_type: owned(self.br_type),
            br_renderengine: owned(self.br_renderengine),
            br_lang: owned(self.br_lang),
            br_features_pdf: self.br_features_pdf,
            br_features_flash: self.br_features_flash,
            br_features_java: self.br_features_java,
            br_features_director: self.br_features_director,
            br_features_quicktime: self.br_features_quicktime,
            br_features_realplayer: self.br_features_realplayer,
            br_features_windowsmedia: self.br_features_windowsmedia,
            br_features_gears: self.br_features_gears,
            br_features_silverlight: self.br_features_silverlight,
            br_cookies: self.br_cookies,
            br_colordepth: owned(self.br_colordepth),
            br_viewwidth: self.br_viewwidth,
            br_viewheight: self.br_viewheight,
            os_name: owned(self.os_name),
            os_family: owned(self.os_family),
            os_manufacturer: owned(self.os_manufacturer),
            os_timezone: owned(self.os_timezone),
            dvce_type: owned(self.dvce_type),
            dvce_ismobile: self.dvce_ismobile,
            dvce_screenwidth: self.dvce_screenwidth,
            dvce_screenheight: self.dvce_screenheight,
            doc_charset: owned(self.doc_charset),
            doc_width: self.doc_width,
            doc_height: self.doc_height,
            tr_currency: owned(self.tr_currency),
            tr_total_base: self.tr_total_base,
            tr_tax_base: self.tr_tax_base,
            tr_shipping_base: self.tr_shipping_base,
            ti_currency: owned(self.ti_currency),
            ti_price_base: self.ti_price_base,
            base_currency: owned(self.base_currency),
            geo_timezone: owned(self.geo_timezone),
            mkt_clickid: owned(self.mkt_clickid),
            mkt_network: owned(self.mkt_network),
            etl_tags: owned(self.etl_tags),
            dvce_sent_tstamp: self.dvce_sent_tstamp,
            refr_domain_userid: owned(self.refr_domain_userid),
            refr_dvce_tstamp: self.refr_dvce_tstamp,
            derived_contexts: self.derived_contexts,
            domain_sessionid: owned(self.domain_sessionid),
            derived_tstamp: self.derived_tstamp,
            event_vendor: owned(self.event_vendor),
            event_name: owned(self.event_name),
            event_format: owned(self.event_format),
            event_version: owned(self.event_version),
            event_fingerprint: owned(self.event_fingerprint),
            true_tstamp: self.true_tstamp,
        }
    }

    /// Calls `v` once per field, in [`FIELD_NAMES`] order.
    pub fn visit<V: FieldVisitor>(&self, v: &mut V) {
        v.text("app_id", self.app_id.as_deref());
        v.text("platform", self.platform.as_deref());
        v.tstamp("etl_tstamp", self.etl_tstamp);
        v.tstamp("collector_tstamp", Some(self.collector_tstamp));
        v.tstamp("dvce_created_tstamp", self.dvce_created_tstamp);
        v.text("event", self.event.as_deref());
        v.text("event_id", self.event_id.as_deref());
        v.int("txn_id", self.txn_id);
        v.text("name_tracker", self.name_tracker.as_deref());
        v.text("v_tracker", self.v_tracker.as_deref());
        v.text("v_collector", self.v_collector.as_deref());
        v.text("v_etl", self.v_etl.as_deref());
        v.text("user_id", self.user_id.as_deref());
        v.text("user_ipaddress", self.user_ipaddress.as_deref());
        v.text("user_fingerprint", self.user_fingerprint.as_deref());
        v.text("domain_userid", self.domain_userid.as_deref());
        v.int("domain_sessionidx", self.domain_sessionidx);
        v.text("network_userid", self.network_userid.as_deref());
        v.text("geo_country", self.geo_country.as_deref());
        v.text("geo_region", self.geo_region.as_deref());
        v.text("geo_city", self.geo_city.as_deref());
        v.text("geo_zipcode", self.geo_zipcode.as_deref());
        v.decimal("geo_latitude", self.geo_latitude);
        v.decimal("geo_longitude", self.geo_longitude);
        v.text("geo_region_name", self.geo_region_name.as_deref());
        v.text("ip_isp", self.ip_isp.as_deref());
        v.text("ip_organization", self.ip_organization.as_deref());
        v.text("ip_domain", self.ip_domain.as_deref());
        v.text("ip_netspeed", self.ip_netspeed.as_deref());
        v.text("page_url", self.page_url.as_deref());
        v.text("page_title", self.page_title.as_deref());
        v.text("page_referrer", self.page_referrer.as_deref());
        v.text("page_urlscheme", self.page_urlscheme.as_deref());
        v.text("page_urlhost", self.page_urlhost.as_deref());
        v.int("page_urlport", self.page_urlport);
        v.text("page_urlpath", self.page_urlpath.as_deref());
        v.text("page_urlquery", self.page_urlquery.as_deref());
        v.text("page_urlfragment", self.page_urlfragment.as_deref());
        v.text("refr_urlscheme", self.refr_urlscheme.as_deref());
        v.text("refr_urlhost", self.refr_urlhost.as_deref());
        v.int("refr_urlport", self.refr_urlport);
        v.text("refr_urlpath", self.refr_urlpath.as_deref());
        v.text("refr_urlquery", self.refr_urlquery.as_deref());
        v.text("refr_urlfragment", self.refr_urlfragment.as_deref());
        v.text("refr_medium", self.refr_medium.as_deref());
        v.text("refr_source", self.refr_source.as_deref());
        v.text("refr_term", self.refr_term.as_deref());
        v.text("mkt_medium", self.mkt_medium.as_deref());
        v.text("mkt_source", self.mkt_source.as_deref());
        v.text("mkt_term", self.mkt_term.as_deref());
        v.text("mkt_content", self.mkt_content.as_deref());
        v.text("mkt_campaign", self.mkt_campaign.as_deref());
        v.contexts("contexts", &self.contexts);
        v.text("se_category", self.se_category.as_deref());
        v.text("se_action", self.se_action.as_deref());
        v.text("se_label", self.se_label.as_deref());
        v.text("se_property", self.se_property.as_deref());
        v.decimal("se_value", self.se_value);
        v.unstruct("unstruct_event", self.unstruct_event.as_ref());
        v.text("tr_orderid", self.tr_orderid.as_deref());
        v.text("tr_affiliation", self.tr_affiliation.as_deref());
        v.decimal("tr_total", self.tr_total);
        v.decimal("tr_tax", self.tr_tax);
        v.decimal("tr_shipping", self.tr_shipping);
        v.text("tr_city", self.tr_city.as_deref());
        v.text("tr_state", self.tr_state.as_deref());
        v.text("tr_country", self.tr_country.as_deref());
        v.text("ti_orderid", self.ti_orderid.as_deref());
        v.text("ti_sku", self.ti_sku.as_deref());
        v.text("ti_name", self.ti_name.as_deref());
        v.text("ti_category", self.ti_category.as_deref());
        v.decimal("ti_price", self.ti_price);
        v.int("ti_quantity", self.ti_quantity);
        v.int("pp_xoffset_min", self.pp_xoffset_min);
        v.int("pp_xoffset_max", self.pp_xoffset_max);
        v.int("pp_yoffset_min", self.pp_yoffset_min);
        v.int("pp_yoffset_max", self.pp_yoffset_max);
        v.text("useragent", self.useragent.as_deref());
        v.text("br_name", self.br_name.as_deref());
        v.text("br_family", self.br_family.as_deref());
        v.text("br_version", self.br_version.as_deref());
        v.text("br_type", self.br_type.as_deref());
        v.text("br_renderengine", self.br_renderengine.as_deref());
        v.text("br_lang", self.br_lang.as_deref());
        v.boolean("br_features_pdf", self.br_features_pdf);
        v.boolean("br_features_flash", self.br_features_flash);
        v.boolean("br_features_java", self.br_features_java);
        v.boolean("br_features_director", self.br_features_director);
        v.boolean("br_features_quicktime", self.br_features_quicktime);
        v.boolean("br_features_realplayer", self.br_features_realplayer);
        v.boolean("br_features_windowsmedia", self.br_features_windowsmedia);
        v.boolean("br_features_gears", self.br_features_gears);
        v.boolean("br_features_silverlight", self.br_features_silverlight);
        v.boolean("br_cookies", self.br_cookies);
        v.text("br_colordepth", self.br_colordepth.as_deref());
        v.int("br_viewwidth", self.br_viewwidth);
        v.int("br_viewheight", self.br_viewheight);
        v.text("os_name", self.os_name.as_deref());
        v.text("os_family", self.os_family.as_deref());
        v.text("os_manufacturer", self.os_manufacturer.as_deref());
        v.text("os_timezone", self.os_timezone.as_deref());
        v.text("dvce_type", self.dvce_type.as_deref());
        v.boolean("dvce_ismobile", self.dvce_ismobile);
        v.int("dvce_screenwidth", self.dvce_screenwidth);
        v.int("dvce_screenheight", self.dvce_screenheight);
        v.text("doc_charset", self.doc_charset.as_deref());
        v.int("doc_width", self.doc_width);
        v.int("doc_height", self.doc_height);
        v.text("tr_currency", self.tr_currency.as_deref());
        v.decimal("tr_total_base", self.tr_total_base);
        v.decimal("tr_tax_base", self.tr_tax_base);
        v.decimal("tr_shipping_base", self.tr_shipping_base);
        v.text("ti_currency", self.ti_currency.as_deref());
        v.decimal("ti_price_base", self.ti_price_base);
        v.text("base_currency", self.base_currency.as_deref());
        v.text("geo_timezone", self.geo_timezone.as_deref());
        v.text("mkt_clickid", self.mkt_clickid.as_deref());
        v.text("mkt_network", self.mkt_network.as_deref());
        v.text("etl_tags", self.etl_tags.as_deref());
        v.tstamp("dvce_sent_tstamp", self.dvce_sent_tstamp);
        v.text("refr_domain_userid", self.refr_domain_userid.as_deref());
        v.tstamp("refr_dvce_tstamp", self.refr_dvce_tstamp);
        v.contexts("derived_contexts", &self.derived_contexts);
        v.text("domain_sessionid", self.domain_sessionid.as_deref());
        v.tstamp("derived_tstamp", self.derived_tstamp);
        v.text("event_vendor", self.event_vendor.as_deref());
        v.text("event_name", self.event_name.as_deref());
        v.text("event_format", self.event_format.as_deref());
        v.text("event_version", self.event_version.as_deref());
        v.text("event_fingerprint", self.event_fingerprint.as_deref());
        v.tstamp("true_tstamp", self.true_tstamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Names(Vec<&'static str>);

    impl FieldVisitor for Names {
        fn text(&mut self, name: &'static str, _: Option<&str>) {
            self.0.push(name);
        }
        fn int(&mut self, name: &'static str, _: Option<i32>) {
            self.0.push(name);
        }
        fn decimal(&mut self, name: &'static str, _: Option<f64>) {
            self.0.push(name);
        }
        fn boolean(&mut self, name: &'static str, _: Option<bool>) {
            self.0.push(name);
        }
        fn tstamp(&mut self, name: &'static str, _: Option<i64>) {
            self.0.push(name);
        }
        fn contexts(&mut self, name: &'static str, _: &[SelfDescribing]) {
            self.0.push(name);
        }
        fn unstruct(&mut self, name: &'static str, _: Option<&SelfDescribing>) {
            self.0.push(name);
        }
    }

    #[test]
    fn the_partition_key_is_the_domain_user_else_the_network_user() {
        let mut event = EnrichedEvent {
            network_userid: Some("n".into()),
            ..EnrichedEvent::default()
        };
        assert_eq!(event.partition_key(), Some("n"));
        event.domain_userid = Some("d".into());
        assert_eq!(event.partition_key(), Some("d"));
        assert_eq!(EnrichedEvent::default().partition_key(), None);
    }

    #[test]
    fn visit_walks_the_canonical_fields_in_order() {
        let mut names = Names::default();
        EnrichedEvent::default().visit(&mut names);
        assert_eq!(names.0, FIELD_NAMES);
    }
}
