//! The processor's pure core: one access-log line in, good events and bad rows out.
//!
//! [`process_line`] parses the line with the configured [`LogFormat`], routes the hit to the
//! tracker adapter (tp1 GET `/i` and `/ice.png`, tp2 POST `/com.snowplowanalytics.snowplow/tp2`),
//! decodes each event's parameters into a [`RawEvent`], fills an [`EnrichedEvent`] the way
//! Snowplow's enrich fills the atomic fields, then hands it to the enrichments. Each step that
//! fails turns the line, or the one event, into a [`BadRow`] with every reason; nothing is dropped
//! and nothing panics. No I/O and no clock: the processing time comes in through [`Context`], so
//! the same line always gives the same output.
//!
//! # Decisions
//!
//! - **event_id** is `eid` when it is a UUID; otherwise (none, or not a UUID) a name-based UUID
//!   (version 5, SHA-1) of the raw line and the event's position in it, under
//!   [`EVENT_ID_NAMESPACE`], so that a replay of the same line gives the same id (DESIGN.md).
//! - **v_collector** is the hit's `cv` when a collector put one in, else [`V_COLLECTOR`]: nginx
//!   and `plow-collector serve` write the same line, so they are one collector.
//! - **user_ipaddress** is `ip`, else the first public address in `X-Forwarded-For` (entries
//!   that are not bare addresses, and private, loopback, link-local, shared and documentation
//!   ranges, are skipped), else `$remote_addr`.
//! - **page_url** that cannot be split into components (no `scheme://host`) is an enrichment
//!   failure, as in Snowplow; an unreadable referrer only leaves `refr_url*` empty.
//!   `page_urlport`/`refr_urlport` default to 80 for `http` and 443 for `https`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use plowline_collector::logformat::{Hit, LogFormat};
use plowline_collector::tracker::{
    parse_query, parse_tp2, Params, RawEvent, Tp2Error, Uuid, ViolationClass,
};
use plowline_collector::uid::Uid;
use sha1::{Digest, Sha1};

use crate::badrow::BadRow;
use crate::EnrichedEvent;

/// The tp2 POST path of the Snowplow tracker protocol.
pub const TP2_PATH: &[u8] = b"/com.snowplowanalytics.snowplow/tp2";

/// `v_etl` of every event this processor writes.
pub const V_ETL: &str = concat!("plowline-", env!("CARGO_PKG_VERSION"));

/// `v_collector` when the hit carries no `cv`.
pub const V_COLLECTOR: &str = "plowline-nginx";

/// The namespace of event ids derived from raw lines (a fixed random UUID).
pub const EVENT_ID_NAMESPACE: [u8; 16] = [
    0x5c, 0x1e, 0x0b, 0x9a, 0x3f, 0x64, 0x4d, 0x2e, 0x8b, 0x71, 0x0c, 0xd3, 0x52, 0x9f, 0xa4, 0x16,
];

/// Vendor of the built-in event types.
const SNOWPLOW: &str = "com.snowplowanalytics.snowplow";

/// Enrichments run on every event once its atomic fields are filled; they return their failure
/// messages (none when all went well). Closures of that shape are enrichments too.
pub trait Enrich {
    /// Enriches `event` (decoded from `params`) in place.
    fn enrich(&self, event: &mut EnrichedEvent, params: &Params<'_>) -> Vec<String>;
}

impl<F> Enrich for F
where
    F: Fn(&mut EnrichedEvent, &Params<'_>) -> Vec<String>,
{
    fn enrich(&self, event: &mut EnrichedEvent, params: &Params<'_>) -> Vec<String> {
        self(event, params)
    }
}

/// No enrichments: the atomic fields only.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnrichments;

impl Enrich for NoEnrichments {
    fn enrich(&self, _: &mut EnrichedEvent, _: &Params<'_>) -> Vec<String> {
        Vec::new()
    }
}

/// What [`process_line`] needs besides the line.
pub struct Context<'a> {
    /// The access-log format the line is in.
    pub format: &'a LogFormat,
    /// Longer lines become `size_violation` bad rows without being parsed.
    pub max_line_bytes: usize,
    /// The processing time (`etl_tstamp`, bad-row timestamps), ms since the epoch. Injected so
    /// that outputs are reproducible in tests.
    pub etl_tstamp_ms: i64,
    /// The enrichments to run.
    pub enrich: &'a dyn Enrich,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("format", &self.format.source())
            .field("max_line_bytes", &self.max_line_bytes)
            .field("etl_tstamp_ms", &self.etl_tstamp_ms)
            .finish_non_exhaustive()
    }
}

/// What one line became: good events and bad rows (together, at least one of them).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LineOutcome {
    /// Enriched events, in the order of the hit, detached from the line.
    pub events: Vec<EnrichedEvent<'static>>,
    /// Bad rows: one for the whole line, or one per failed event.
    pub bad_rows: Vec<BadRow>,
}

/// Which adapter of the tracker protocol a hit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// GET `/i` or `/ice.png`: one event in the query string.
    Tp1,
    /// POST `/com.snowplowanalytics.snowplow/tp2`: a `payload_data` body of events.
    Tp2,
}

impl Protocol {
    /// `tp1` or `tp2`, the version named in bad rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tp1 => "tp1",
            Protocol::Tp2 => "tp2",
        }
    }
}

/// Why a hit has no tracker events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// Neither a tp1 GET nor a tp2 POST.
    #[error("not a tracker hit: {method} {path} (status {status})")]
    NotTracker {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The response status, `-` when not logged.
        status: String,
    },
    /// A tp2 POST whose body the log does not carry.
    #[error("tp2 POST without a logged body")]
    NoBody,
    /// A tp2 body that is not a `payload_data` document.
    #[error(transparent)]
    Tp2(#[from] Tp2Error),
}

/// The tracker parameters a hit carries: one set for a tp1 GET, one per event for a tp2 POST.
pub fn tracker_payloads<'h>(hit: &'h Hit<'_>) -> Result<(Protocol, Vec<Params<'h>>), AdapterError> {
    let method = hit.method.as_ref();
    match hit.path() {
        b"/i" | b"/ice.png" if matches!(method, b"GET" | b"HEAD") => Ok((
            Protocol::Tp1,
            vec![parse_query(hit.query().unwrap_or_default())],
        )),
        TP2_PATH if method == b"POST" => {
            let body = hit.body.as_deref().ok_or(AdapterError::NoBody)?;
            Ok((Protocol::Tp2, parse_tp2(body)?))
        }
        path => Err(AdapterError::NotTracker {
            method: String::from_utf8_lossy(method).into_owned(),
            path: String::from_utf8_lossy(path).into_owned(),
            status: hit.status.map_or("-".to_owned(), |s| s.to_string()),
        }),
    }
}

/// Turns one access-log line (without its line break) into events and bad rows.
pub fn process_line(line: &[u8], ctx: &Context<'_>) -> LineOutcome {
    let mut outcome = LineOutcome::default();
    process_line_into(line, ctx, &mut outcome);
    outcome
}

/// [`process_line`], appending to `outcome` (so that a caller can reuse its buffers).
pub fn process_line_into(line: &[u8], ctx: &Context<'_>, outcome: &mut LineOutcome) {
    let LineOutcome { events, bad_rows } = outcome;
    process_line_with(line, ctx, bad_rows, |event| {
        events.push(event.clone().into_owned());
    });
}

/// [`process_line`] for callers that write events out as they come: each good event goes to
/// `on_event` while the line is at hand (it borrows text from the line and its decoded
/// parameters, so it lives no longer than the call), bad rows are appended to `bad_rows`.
pub fn process_line_with(
    line: &[u8],
    ctx: &Context<'_>,
    bad_rows: &mut Vec<BadRow>,
    mut on_event: impl FnMut(&EnrichedEvent<'_>),
) {
    let now = ctx.etl_tstamp_ms;
    if line.len() > ctx.max_line_bytes {
        let row = BadRow::size_violation(line, ctx.max_line_bytes, now);
        bad_rows.push(row);
        return;
    }
    // The hit is borrowed where it lies, in the result: a move out of it would copy it whole.
    let parsed = ctx.format.parse(line).and_then(|record| record.hit());
    let hit = match &parsed {
        Ok(hit) => hit,
        Err(error) => {
            let row = BadRow::format_violation(line, "nginx", &error.to_string(), now);
            bad_rows.push(row);
            return;
        }
    };
    let (protocol, payloads) = match tracker_payloads(hit) {
        Ok(found) => found,
        Err(error) => {
            let (version, field, value): (&str, &str, &[u8]) = match &error {
                AdapterError::NotTracker { .. } => ("tp1", "path", hit.path()),
                AdapterError::NoBody | AdapterError::Tp2(_) => {
                    ("tp2", "body", hit.body.as_deref().unwrap_or_default())
                }
            };
            let message = error.to_string();
            let row = BadRow::adapter_failure(line, hit, version, (field, value, &message), now);
            bad_rows.push(row);
            return;
        }
    };
    if payloads.is_empty() {
        let message = "a payload_data document with at least one event";
        let body = hit.body.as_deref().unwrap_or_default();
        let row = BadRow::adapter_failure(line, hit, "tp2", ("body", body, message), now);
        bad_rows.push(row);
        return;
    }
    let version = protocol.as_str();
    for (index, params) in payloads.iter().enumerate() {
        let mut event = from_hit(hit, ctx);
        // The decoded event is worked on where it lies, in the result: a move out of it would
        // copy it whole.
        match &mut RawEvent::from_params(params) {
            Ok(raw) => {
                let mut failures = fill_from_raw(&mut event, raw);
                if event.event_id.is_none() {
                    event.event_id = Some(Cow::Owned(derived_event_id(line, index)));
                }
                failures.extend(ctx.enrich.enrich(&mut event, params));
                if failures.is_empty() {
                    on_event(&event);
                } else {
                    bad_rows.push(BadRow::enrichment_failures(
                        hit, version, params, &failures, &event, now,
                    ));
                }
            }
            Err(rejected) => {
                let row = match rejected.class() {
                    ViolationClass::Schema => {
                        event.event_id = Some(Cow::Owned(
                            params
                                .get("eid")
                                .and_then(Uuid::parse)
                                .map_or_else(|| derived_event_id(line, index), |u| u.to_string()),
                        ));
                        BadRow::schema_violations(
                            hit,
                            version,
                            params,
                            &rejected.violations,
                            &event,
                            now,
                        )
                    }
                    ViolationClass::TrackerProtocol => {
                        BadRow::tracker_protocol(hit, version, params, &rejected.violations, now)
                    }
                };
                bad_rows.push(row);
            }
        }
    }
}

/// The fields that come from the hit rather than the tracker: times, versions, and the
/// collector's view of address, user agent, page and cookie (parameters override them later).
fn from_hit<'h>(hit: &'h Hit<'_>, ctx: &Context<'_>) -> EnrichedEvent<'h> {
    EnrichedEvent {
        etl_tstamp: Some(ctx.etl_tstamp_ms),
        collector_tstamp: hit.collector_tstamp_ms,
        v_collector: Some(Cow::Borrowed(V_COLLECTOR)),
        v_etl: Some(Cow::Borrowed(V_ETL)),
        user_ipaddress: hit_ipaddress(hit),
        useragent: hit.user_agent.as_deref().and_then(nonempty_text),
        network_userid: cookie_userid(hit),
        page_url: hit.referer.as_deref().and_then(nonempty_text),
        ..EnrichedEvent::default()
    }
}

/// The client's address as the collector saw it: the first public address in
/// `X-Forwarded-For`, else `$remote_addr`.
fn hit_ipaddress<'h>(hit: &'h Hit<'_>) -> Option<Cow<'h, str>> {
    let forwarded = hit
        .x_forwarded_for
        .as_deref()
        .and_then(|xff| std::str::from_utf8(xff).ok())
        .and_then(first_public_address);
    forwarded
        .map(Cow::Borrowed)
        .or_else(|| hit.remote_addr.as_deref().and_then(nonempty_text))
}

/// The first entry of an `X-Forwarded-For` list that is a public IP address.
pub fn first_public_address(xff: &str) -> Option<&str> {
    // Split at each `,` by a plain byte scan: the entries are a few bytes long, shorter than
    // the set-up of a character search.
    let mut rest = xff;
    loop {
        let (entry, next) = match rest.bytes().position(|b| b == b',') {
            Some(comma) => (&rest[..comma], Some(&rest[comma + 1..])),
            None => (rest, None),
        };
        let entry = entry.trim();
        if entry.parse::<IpAddr>().is_ok_and(is_public) {
            return Some(entry);
        }
        rest = next?;
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The first-party cookie's id (`$uid_got`, else `$uid_set`) as a UUID.
fn cookie_userid(hit: &Hit<'_>) -> Option<Cow<'static, str>> {
    [hit.uid_got.as_deref(), hit.uid_set.as_deref()]
        .into_iter()
        .flatten()
        .find_map(Uid::parse_logged)
        .map(|(_, uid)| uuid_string(&Uuid::from_bytes(uid.0)))
}

fn nonempty_text(bytes: &[u8]) -> Option<Cow<'_, str>> {
    (!bytes.is_empty() && bytes != b"-").then(|| match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    })
}

fn text(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.map(Cow::Borrowed)
}

fn int(value: Option<u32>) -> Option<i32> {
    value.and_then(|v| i32::try_from(v).ok())
}

/// Fills the atomic fields from the decoded parameters and derives the rest (timestamps, URL
/// components, event vendor/name). Returns failure messages (an unreadable page URL).
fn fill_from_raw<'p>(event: &mut EnrichedEvent<'p>, raw: &mut RawEvent<'p>) -> Vec<String> {
    let mut failures = Vec::new();
    let e = event;
    e.event = Some(Cow::Borrowed(raw.event.as_str()));
    e.event_id = uuid_field(raw.event_id.as_ref(), raw.event_id_text);
    e.app_id = text(raw.app_id);
    e.platform = Some(Cow::Borrowed(raw.platform.as_str()));
    e.name_tracker = text(raw.name_tracker);
    e.v_tracker = text(raw.v_tracker);
    if let Some(cv) = raw.v_collector {
        e.v_collector = Some(Cow::Borrowed(cv));
    }
    e.dvce_created_tstamp = raw.dvce_created_tstamp;
    e.dvce_sent_tstamp = raw.dvce_sent_tstamp;
    e.true_tstamp = raw.true_tstamp;
    e.derived_tstamp = Some(derived_tstamp(
        e.collector_tstamp,
        raw.dvce_created_tstamp,
        raw.dvce_sent_tstamp,
        raw.true_tstamp,
    ));
    e.os_timezone = text(raw.os_timezone);
    e.txn_id = int(raw.txn_id);
    e.user_id = text(raw.user_id);
    e.domain_userid = text(raw.domain_userid);
    e.domain_sessionid = uuid_field(raw.domain_sessionid.as_ref(), raw.domain_sessionid_text);
    e.domain_sessionidx = int(raw.domain_sessionidx);
    if let Some(nuid) = raw.network_userid_param() {
        e.network_userid = Some(Cow::Borrowed(nuid));
    }
    e.user_fingerprint = text(raw.user_fingerprint);
    if let Some(ip) = raw.user_ipaddress {
        e.user_ipaddress = Some(Cow::Borrowed(ip));
    }
    if let Some(ua) = raw.useragent {
        e.useragent = Some(Cow::Borrowed(ua));
    }
    if let Some(url) = raw.page_url {
        e.page_url = Some(Cow::Borrowed(url));
    }
    e.page_referrer = text(raw.page_referrer);
    e.page_title = text(raw.page_title);
    e.br_lang = text(raw.br_lang);
    e.doc_charset = text(raw.doc_charset);
    e.br_colordepth = match raw.br_colordepth_text {
        Some(text) => Some(Cow::Borrowed(text)),
        None => raw
            .br_colordepth
            .map(|cd| Cow::Owned(itoa::Buffer::new().format(cd).to_owned())),
    };
    e.br_cookies = raw.br_cookies;
    if let Some(d) = raw.dvce_screen {
        (e.dvce_screenwidth, e.dvce_screenheight) = (int(Some(d.width)), int(Some(d.height)));
    }
    if let Some(d) = raw.br_view {
        (e.br_viewwidth, e.br_viewheight) = (int(Some(d.width)), int(Some(d.height)));
    }
    if let Some(d) = raw.doc_size {
        (e.doc_width, e.doc_height) = (int(Some(d.width)), int(Some(d.height)));
    }
    let f = &raw.br_features;
    e.br_features_pdf = f.pdf;
    e.br_features_flash = f.flash;
    e.br_features_java = f.java;
    e.br_features_director = f.director;
    e.br_features_quicktime = f.quicktime;
    e.br_features_realplayer = f.realplayer;
    e.br_features_windowsmedia = f.windowsmedia;
    e.br_features_gears = f.gears;
    e.br_features_silverlight = f.silverlight;
    e.pp_xoffset_min = raw.pp_xoffset_min;
    e.pp_xoffset_max = raw.pp_xoffset_max;
    e.pp_yoffset_min = raw.pp_yoffset_min;
    e.pp_yoffset_max = raw.pp_yoffset_max;
    e.se_category = text(raw.se_category);
    e.se_action = text(raw.se_action);
    e.se_label = text(raw.se_label);
    e.se_property = text(raw.se_property);
    e.se_value = raw.se_value.map(|d| d.to_f64());
    e.tr_orderid = text(raw.tr_orderid);
    e.tr_affiliation = text(raw.tr_affiliation);
    e.tr_total = raw.tr_total.map(|d| d.to_f64());
    e.tr_tax = raw.tr_tax.map(|d| d.to_f64());
    e.tr_shipping = raw.tr_shipping.map(|d| d.to_f64());
    e.tr_city = text(raw.tr_city);
    e.tr_state = text(raw.tr_state);
    e.tr_country = text(raw.tr_country);
    e.tr_currency = text(raw.tr_currency);
    e.ti_orderid = text(raw.ti_orderid);
    e.ti_sku = text(raw.ti_sku);
    e.ti_name = text(raw.ti_name);
    e.ti_category = text(raw.ti_category);
    e.ti_price = raw.ti_price.map(|d| d.to_f64());
    e.ti_quantity = raw.ti_quantity;
    e.ti_currency = text(raw.ti_currency);
    e.contexts = std::mem::take(&mut raw.contexts);
    e.unstruct_event = raw.unstruct_event.take();

    let (vendor, name, format, version) = match &e.unstruct_event {
        Some(ue) => (
            Cow::Owned(ue.schema.vendor.clone()),
            Cow::Owned(ue.schema.name.clone()),
            Cow::Owned(ue.schema.format.clone()),
            Cow::Owned(ue.schema.version()),
        ),
        None => {
            let name = match raw.event.as_str() {
                "struct" => "event",
                other => other,
            };
            (
                Cow::Borrowed(SNOWPLOW),
                Cow::Borrowed(name),
                Cow::Borrowed("jsonschema"),
                Cow::Borrowed("1-0-0"),
            )
        }
    };
    e.event_vendor = Some(vendor);
    e.event_name = Some(name);
    e.event_format = Some(format);
    e.event_version = Some(version);

    if let Some(url) = &e.page_url {
        match UrlFields::of(url) {
            Some(parts) => {
                (
                    e.page_urlscheme,
                    e.page_urlhost,
                    e.page_urlport,
                    e.page_urlpath,
                    e.page_urlquery,
                    e.page_urlfragment,
                ) = parts.into_fields();
            }
            None => failures.push(format!(
                "page_url {:?} is not a URL with a scheme and a host",
                truncate(url, 256)
            )),
        }
    }
    if let Some(parts) = e.page_referrer.as_ref().and_then(UrlFields::of) {
        (
            e.refr_urlscheme,
            e.refr_urlhost,
            e.refr_urlport,
            e.refr_urlpath,
            e.refr_urlquery,
            e.refr_urlfragment,
        ) = parts.into_fields();
    }
    failures
}

/// [`UrlParts`] as event fields: borrowed from the text the URL borrows from, else owned.
struct UrlFields<'p> {
    scheme: Cow<'p, str>,
    host: Cow<'p, str>,
    port: Option<i32>,
    path: Option<Cow<'p, str>>,
    query: Option<Cow<'p, str>>,
    fragment: Option<Cow<'p, str>>,
}

impl<'p> UrlFields<'p> {
    fn of(url: &Cow<'p, str>) -> Option<Self> {
        match url {
            Cow::Borrowed(url) => parse_url(url).map(|parts| Self::new(parts, Cow::Borrowed)),
            Cow::Owned(url) => {
                parse_url(url).map(|parts| Self::new(parts, |s: &str| Cow::Owned(s.to_owned())))
            }
        }
    }

    fn new<'u>(parts: UrlParts<'u>, text: impl Fn(&'u str) -> Cow<'p, str>) -> Self {
        UrlFields {
            scheme: text(parts.scheme),
            host: text(parts.host),
            port: parts.port.map(i32::from),
            path: parts.path.map(&text),
            query: parts.query.map(&text),
            fragment: parts.fragment.map(&text),
        }
    }

    /// The six event fields of a URL, in the order the event has them (`…urlscheme`, `…urlhost`,
    /// `…urlport`, `…urlpath`, `…urlquery`, `…urlfragment`), for `page_url` and `page_referrer`
    /// alike.
    fn into_fields(self) -> UrlFieldValues<'p> {
        (
            Some(self.scheme),
            Some(self.host),
            self.port,
            self.path,
            self.query,
            self.fragment,
        )
    }
}

/// What [`UrlFields::into_fields`] gives.
type UrlFieldValues<'p> = (
    Option<Cow<'p, str>>,
    Option<Cow<'p, str>>,
    Option<i32>,
    Option<Cow<'p, str>>,
    Option<Cow<'p, str>>,
    Option<Cow<'p, str>>,
);

/// A UUID field: the tracker's text when it is already canonical (no copy), else the UUID
/// formatted.
fn uuid_field<'p>(uuid: Option<&Uuid>, canonical: Option<&'p str>) -> Option<Cow<'p, str>> {
    match canonical {
        Some(text) => Some(Cow::Borrowed(text)),
        None => uuid.map(uuid_string),
    }
}

/// The lower-case 8-4-4-4-12 form of a UUID (what its `Display` writes, without the formatter).
fn uuid_string(uuid: &Uuid) -> Cow<'static, str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Where the two digits of each byte go in `8-4-4-4-12`.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    // Written into a fixed buffer, then copied into the string at once.
    let mut text = [b'-'; 36];
    for (&at, &byte) in AT.iter().zip(uuid.as_bytes()) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits and dashes are ASCII: always valid UTF-8.
    Cow::Owned(std::str::from_utf8(&text).unwrap_or_default().to_owned())
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `derived_tstamp`: `ttm` if set; else collector − (sent − created) when both are set and
/// created ≤ sent; else the collector time.
pub fn derived_tstamp(
    collector: i64,
    created: Option<i64>,
    sent: Option<i64>,
    true_tstamp: Option<i64>,
) -> i64 {
    if let Some(ttm) = true_tstamp {
        return ttm;
    }
    match (created, sent) {
        (Some(created), Some(sent)) if created <= sent => collector.saturating_sub(sent - created),
        _ => collector,
    }
}

/// The event id derived from a raw line and the event's position in it: a version-5 UUID of
/// SHA-1 over [`EVENT_ID_NAMESPACE`], the line and the index (big-endian `u32`).
pub fn derived_event_id(line: &[u8], index: usize) -> String {
    let mut hasher = Sha1::new();
    hasher.update(EVENT_ID_NAMESPACE);
    hasher.update(line);
    hasher.update(u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid_string(&Uuid::from_bytes(bytes)).into_owned()
}

/// The components of an absolute URL, as Snowplow's `page_url*` / `refr_url*` columns hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// The scheme, lower-case as sent (`https`).
    pub scheme: &'a str,
    /// The host, without user info or port; IPv6 addresses keep their brackets.
    pub host: &'a str,
    /// The explicit port, else 80 for `http` and 443 for `https`.
    pub port: Option<u16>,
    /// The path; `None` when empty.
    pub path: Option<&'a str>,
    /// The query, without `?`; `None` when absent or empty.
    pub query: Option<&'a str>,
    /// The fragment, without `#`; `None` when absent or empty.
    pub fragment: Option<&'a str>,
}

/// Where a URL's authority ends (its first `/`, `?` or `#`) and its last `@` and `:` before
/// that end.
#[derive(Debug, PartialEq)]
struct AuthorityMarks {
    end: usize,
    last_at: Option<usize>,
    last_colon: Option<usize>,
}

/// The [`AuthorityMarks`] of `rest`, the URL after `scheme://`, in one scan: an authority is a
/// few bytes, and rarely holds an `@` or `:`, so the scan mostly stops once, at its end.
fn authority_marks(rest: &[u8]) -> AuthorityMarks {
    let mut marks = AuthorityMarks {
        end: rest.len(),
        last_at: None,
        last_colon: None,
    };
    let mut from = 0;
    while let Some(i) = rest[from..]
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#' | b'@' | b':'))
    {
        let at = from + i;
        match rest[at] {
            b'@' => marks.last_at = Some(at),
            b':' => marks.last_colon = Some(at),
            _ => {
                marks.end = at;
                break;
            }
        }
        from = at + 1;
    }
    marks
}

/// The index of the first `needle` in `haystack`: a plain scan when it is short, where the
/// set-up of a search call would cost more than the scan, else a search call.
fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const SHORT: usize = 32;
    if haystack.len() <= SHORT {
        haystack.iter().position(|&b| b == needle)
    } else {
        memchr::memchr(needle, haystack)
    }
}

/// Splits `scheme://[userinfo@]host[:port][/path][?query][#fragment]`. `None` without a scheme
/// (`[A-Za-z][A-Za-z0-9+.-]*`), without a host, or with a port that is not a number up to 65535.
pub fn parse_url<'a>(url: &'a str) -> Option<UrlParts<'a>> {
    // A scheme holds no `:`, so its `://` can only be at the first `:` (found with a plain byte
    // scan: a scheme is a few bytes, shorter than the set-up of a search call).
    let colon = url.bytes().position(|b| b == b':')?;
    let (scheme, rest) = (&url[..colon], url[colon..].strip_prefix("://")?);
    let mut chars = scheme.bytes();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'))
    {
        return None;
    }
    // The authority ends at the first `/`, `?` or `#`, the path at the next `?` or `#` (both
    // short: a plain scan); the query, often the longest part, is searched for its `#` when it
    // is long (see `find_byte`).
    let bytes = rest.as_bytes();
    let authority = authority_marks(bytes);
    let authority_end = authority.end;
    let path_end = bytes[authority_end..]
        .iter()
        .position(|&b| matches!(b, b'?' | b'#'))
        .map_or(bytes.len(), |i| authority_end + i);
    let (query, fragment) = match bytes.get(path_end) {
        Some(b'?') => {
            let after = &rest[path_end + 1..];
            match find_byte(b'#', after.as_bytes()) {
                Some(i) => (Some(&after[..i]), Some(&after[i + 1..])),
                None => (Some(after), None),
            }
        }
        Some(_) => (None, Some(&rest[path_end + 1..])),
        None => (None, None),
    };
    let path = &rest[authority_end..path_end];
    let host_start = authority.last_at.map_or(0, |at| at + 1);
    let host_port = &rest[host_start..authority_end];
    let (host, port) = if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        let (host, after) = host_port.split_at(close + 1);
        (host, after.strip_prefix(':'))
    } else {
        // The last `:` of the authority is the port's when it comes after the userinfo.
        match authority.last_colon.filter(|&colon| colon >= host_start) {
            Some(colon) => (
                &rest[host_start..colon],
                Some(&rest[colon + 1..authority_end]),
            ),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port.filter(|p| !p.is_empty()) {
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => Some(port.parse().ok()?),
        Some(_) => return None,
        None if scheme.eq_ignore_ascii_case("http") => Some(80),
        None if scheme.eq_ignore_ascii_case("https") => Some(443),
        None => None,
    };
    let nonempty = |s: &'a str| (!s.is_empty()).then_some(s);
    Some(UrlParts {
        scheme,
        host,
        port,
        path: nonempty(path),
        query: query.and_then(nonempty),
        fragment: fragment.and_then(nonempty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::badrow::BadRowType;
    use serde_json::json;

    const EID: &str = "c6ef3124-b53a-4b13-a233-0088f79dcbcb";
    const UID_LOGGED: &str = "sp=0100007F9C38026BC521C2A102070303";
    const UID_UUID: &str = "7f000001-6b02-389c-a1c2-21c503030702";
    const NOW: i64 = 1_700_000_100_000;

    /// A canonical line: GET, status 200, `$msec` 1700000000.123, plus `vars`.
    fn line(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        LogFormat::canonical().write_line(
            |var| {
                vars.iter()
                    .find(|(name, _)| *name == var)
                    .map(|(_, value)| value.as_bytes())
                    .or(match var {
                        "msec" => Some(b"1700000000.123".as_slice()),
                        "request_method" => Some(b"GET".as_slice()),
                        "status" => Some(b"200".as_slice()),
                        _ => None,
                    })
            },
            &mut out,
        );
        out.pop();
        out
    }

    fn get(query: &str, vars: &[(&str, &str)]) -> Vec<u8> {
        let uri = format!("/i?{query}");
        let mut all = vec![("request_uri", uri.as_str())];
        all.extend_from_slice(vars);
        line(&all)
    }

    fn run_with(line: &[u8], enrich: &dyn Enrich) -> LineOutcome {
        let format = LogFormat::canonical();
        let ctx = Context {
            format: &format,
            max_line_bytes: 64 * 1024,
            etl_tstamp_ms: NOW,
            enrich,
        };
        process_line(line, &ctx)
    }

    fn run(line: &[u8]) -> LineOutcome {
        run_with(line, &NoEnrichments)
    }

    fn one(line: &[u8]) -> EnrichedEvent<'static> {
        let mut outcome = run(line);
        assert!(outcome.bad_rows.is_empty(), "{:?}", outcome.bad_rows);
        assert_eq!(outcome.events.len(), 1);
        outcome.events.remove(0)
    }

    fn bad(line: &[u8]) -> serde_json::Value {
        let outcome = run(line);
        assert!(outcome.events.is_empty(), "{:?}", outcome.events);
        assert_eq!(outcome.bad_rows.len(), 1);
        outcome.bad_rows[0].to_value()
    }

    #[test]
    fn event_types_and_their_vendor_name_format_version() {
        for (code, event, name) in [
            ("pv", "page_view", "page_view"),
            ("pp", "page_ping", "page_ping"),
            ("se", "struct", "event"),
            ("ev", "struct", "event"),
            ("tr", "transaction", "transaction"),
            ("ti", "transaction_item", "transaction_item"),
            ("ad", "ad_impression", "ad_impression"),
        ] {
            let e = one(&get(&format!("e={code}&p=web"), &[]));
            assert_eq!(e.event.as_deref(), Some(event));
            assert_eq!(e.event_vendor.as_deref(), Some(SNOWPLOW));
            assert_eq!(e.event_name.as_deref(), Some(name));
            assert_eq!(e.event_format.as_deref(), Some("jsonschema"));
            assert_eq!(e.event_version.as_deref(), Some("1-0-0"));
        }
        let ue = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/button_click/jsonschema/2-1-3","data":{"id":"buy"}}}"#;
        let e = one(&get(&format!("e=ue&p=web&ue_pr={}", encode(ue)), &[]));
        assert_eq!(e.event.as_deref(), Some("unstruct"));
        assert_eq!(e.event_vendor.as_deref(), Some("com.acme"));
        assert_eq!(e.event_name.as_deref(), Some("button_click"));
        assert_eq!(e.event_version.as_deref(), Some("2-1-3"));
        assert_eq!(e.unstruct_event.unwrap().data, json!({"id": "buy"}));
    }

    /// Percent-encodes everything but unreserved characters.
    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn event_id_is_eid_else_derived_from_the_line_deterministically() {
        let e = one(&get(&format!("e=pv&p=web&eid={}", EID.to_uppercase()), &[]));
        assert_eq!(e.event_id.as_deref(), Some(EID));
        let hit = get("e=pv&p=web", &[]);
        let first = one(&hit).event_id.unwrap();
        assert_eq!(
            one(&hit).event_id.unwrap(),
            first,
            "replays give the same id"
        );
        assert!(Uuid::parse(&first).is_some());
        assert_eq!(&first[14..15], "5", "a version-5 UUID: {first}");
        assert_ne!(one(&get("e=pv&p=web&aid=x", &[])).event_id.unwrap(), first);
        assert_ne!(derived_event_id(&hit, 1), derived_event_id(&hit, 0));
        // An eid that is not a UUID gets a derived id too, the same on every replay.
        let odd = get("e=pv&p=web&eid=not-a-uuid", &[]);
        let derived = one(&odd).event_id.unwrap();
        assert!(Uuid::parse(&derived).is_some(), "{derived}");
        assert_eq!(one(&odd).event_id.unwrap(), derived);
    }

    proptest::proptest! {
        #[test]
        fn authority_marks_are_found_as_separate_searches_find_them(
            rest in "[a:@/?#\\[\\]1.]{0,24}",
        ) {
            let bytes = rest.as_bytes();
            let end = bytes
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(bytes.len());
            let last = |byte: u8| bytes[..end].iter().rposition(|&b| b == byte);
            let want = AuthorityMarks {
                end,
                last_at: last(b'@'),
                last_colon: last(b':'),
            };
            proptest::prop_assert_eq!(authority_marks(bytes), want);
        }
    }

    proptest::proptest! {
        #[test]
        fn a_byte_is_found_as_a_search_finds_it(haystack in "[a#]{0,80}") {
            let haystack = haystack.as_bytes();
            proptest::prop_assert_eq!(
                find_byte(b'#', haystack),
                memchr::memchr(b'#', haystack)
            );
        }

        #[test]
        fn the_first_public_address_is_found_as_by_splitting(xff in "[0-9a-f.:, ]{0,40}") {
            let by_splitting = xff
                .split(',')
                .map(str::trim)
                .find(|entry| entry.parse::<IpAddr>().is_ok_and(is_public));
            proptest::prop_assert_eq!(first_public_address(&xff), by_splitting);
        }
    }

    #[test]
    fn uuid_strings_match_display() {
        let uuid = Uuid::parse("0123ABCD-4567-89ab-cdef-0123456789AB").unwrap();
        assert_eq!(uuid_string(&uuid), uuid.to_string());
        let (_, uid) = Uid::parse_logged(UID_LOGGED.as_bytes()).unwrap();
        assert_eq!(uuid_string(&Uuid::from_bytes(uid.0)), uid.to_uuid_string());
    }

    #[test]
    fn timestamps_and_derived_tstamp() {
        let e = one(&get("e=pv&p=web&dtm=1699999990000&stm=1699999995000", &[]));
        assert_eq!(e.collector_tstamp, 1_700_000_000_123);
        assert_eq!(e.etl_tstamp, Some(NOW));
        assert_eq!(e.dvce_created_tstamp, Some(1_699_999_990_000));
        assert_eq!(e.dvce_sent_tstamp, Some(1_699_999_995_000));
        assert_eq!(e.derived_tstamp, Some(1_700_000_000_123 - 5000));
        let e = one(&get("e=pv&p=web&dtm=1&stm=2&ttm=1600000000000", &[]));
        assert_eq!(e.true_tstamp, Some(1_600_000_000_000));
        assert_eq!(e.derived_tstamp, Some(1_600_000_000_000));
        assert_eq!(
            derived_tstamp(100, Some(50), Some(40), None),
            100,
            "created > sent"
        );
        assert_eq!(derived_tstamp(100, Some(50), None, None), 100);
        assert_eq!(derived_tstamp(100, None, None, None), 100);
    }

    #[test]
    fn versions() {
        let e = one(&get("e=pv&p=web&tv=js-3.0.0&tna=sp&aid=shop", &[]));
        assert_eq!(e.v_collector.as_deref(), Some(V_COLLECTOR));
        assert_eq!(e.v_etl.as_deref(), Some(V_ETL));
        assert_eq!(e.v_tracker.as_deref(), Some("js-3.0.0"));
        assert_eq!(e.name_tracker.as_deref(), Some("sp"));
        assert_eq!(e.app_id.as_deref(), Some("shop"));
        assert_eq!(e.platform.as_deref(), Some("web"));
        let e = one(&get("e=pv&p=web&cv=ssc-2.0", &[]));
        assert_eq!(e.v_collector.as_deref(), Some("ssc-2.0"));
    }

    #[test]
    fn page_url_falls_back_to_the_referer_header_and_is_split() {
        let url = "https://shop.example.com/a/b?x=1&y=2#top";
        let e = one(&get(&format!("e=pv&p=web&url={}", encode(url)), &[]));
        assert_eq!(e.page_url.as_deref(), Some(url));
        assert_eq!(e.page_urlscheme.as_deref(), Some("https"));
        assert_eq!(e.page_urlhost.as_deref(), Some("shop.example.com"));
        assert_eq!(e.page_urlport, Some(443));
        assert_eq!(e.page_urlpath.as_deref(), Some("/a/b"));
        assert_eq!(e.page_urlquery.as_deref(), Some("x=1&y=2"));
        assert_eq!(e.page_urlfragment.as_deref(), Some("top"));
        let e = one(&get(
            "e=pv&p=web",
            &[("http_referer", "http://h.example:8080/p")],
        ));
        assert_eq!(e.page_url.as_deref(), Some("http://h.example:8080/p"));
        assert_eq!(e.page_urlport, Some(8080));
        assert_eq!(e.page_urlquery, None);
        let refr = "http://www.google.com/search?q=boots";
        let e = one(&get(&format!("e=pv&p=web&refr={}", encode(refr)), &[]));
        assert_eq!(e.page_referrer.as_deref(), Some(refr));
        assert_eq!(e.refr_urlhost.as_deref(), Some("www.google.com"));
        assert_eq!(e.refr_urlport, Some(80));
        assert_eq!(e.refr_urlpath.as_deref(), Some("/search"));
        assert_eq!(e.refr_urlquery.as_deref(), Some("q=boots"));
        let e = one(&get("e=pv&p=web&refr=not%20a%20url", &[]));
        assert_eq!(
            (e.page_referrer.as_deref(), e.refr_urlhost),
            (Some("not a url"), None)
        );
    }

    #[test]
    fn urls_split_like_snowplow() {
        let p = parse_url("HTTP://user:pw@[::1]:81/x#f").unwrap();
        assert_eq!((p.scheme, p.host, p.port), ("HTTP", "[::1]", Some(81)));
        assert_eq!((p.path, p.query, p.fragment), (Some("/x"), None, Some("f")));
        let p = parse_url("android-app://com.example").unwrap();
        assert_eq!((p.host, p.port, p.path), ("com.example", None, None));
        assert_eq!(parse_url("example.com/x"), None);
        assert_eq!(parse_url("http:///x"), None);
        assert_eq!(parse_url("http://h:99999/"), None);
        assert_eq!(parse_url("http://h:x/"), None);
        assert_eq!(parse_url("1http://h/"), None);
        assert_eq!(parse_url("a:b://h/"), None);
        let parts = |url| {
            let p = parse_url(url).unwrap();
            (p.host, p.path, p.query, p.fragment)
        };
        assert_eq!(
            parts("http://h?x/y#z/w?q"),
            ("h", None, Some("x/y"), Some("z/w?q"))
        );
        assert_eq!(parts("http://h#f?x/y"), ("h", None, None, Some("f?x/y")));
        assert_eq!(
            parts("https://h/p/q?a=1&b=/c#"),
            ("h", Some("/p/q"), Some("a=1&b=/c"), None)
        );
        assert_eq!(parts("http://h/?#"), ("h", Some("/"), None, None));
    }

    #[test]
    fn an_unreadable_page_url_is_an_enrichment_failure() {
        let row = bad(&get("e=pv&p=web&url=nope", &[]));
        assert_eq!(row["schema"], BadRowType::EnrichmentFailures.schema());
        let message = &row["data"]["failure"]["messages"][0]["message"]["error"];
        assert!(message.as_str().unwrap().contains("page_url"), "{row}");
        assert_eq!(row["data"]["payload"]["enriched"]["page_url"], "nope");
        assert_eq!(
            row["data"]["payload"]["raw"]["parameters"][2]["name"],
            "url"
        );
    }

    #[test]
    fn user_ipaddress_is_ip_else_first_public_forwarded_else_remote() {
        let xff = "10.0.0.1, unknown, 203.0.113.9, 8.8.8.8, 1.1.1.1";
        let vars = [("remote_addr", "192.0.2.1"), ("http_x_forwarded_for", xff)];
        assert_eq!(
            one(&get("e=pv&p=web", &vars)).user_ipaddress.as_deref(),
            Some("8.8.8.8")
        );
        let e = one(&get("e=pv&p=web&ip=9.9.9.9", &vars));
        assert_eq!(e.user_ipaddress.as_deref(), Some("9.9.9.9"));
        let vars = [
            ("remote_addr", "192.0.2.1"),
            ("http_x_forwarded_for", "10.1.1.1"),
        ];
        assert_eq!(
            one(&get("e=pv&p=web", &vars)).user_ipaddress.as_deref(),
            Some("192.0.2.1")
        );
        assert_eq!(
            first_public_address("::1, 2a00:1450::1"),
            Some("2a00:1450::1")
        );
        assert_eq!(first_public_address("100.64.0.1, fd00::1, fe80::1"), None);
    }

    #[test]
    fn network_userid_is_tnuid_else_nuid_else_the_cookie() {
        let cookie = [("uid_got", UID_LOGGED)];
        let e = one(&get("e=pv&p=web", &cookie));
        assert_eq!(e.network_userid.as_deref(), Some(UID_UUID));
        let e = one(&get("e=pv&p=web", &[("uid_set", UID_LOGGED)]));
        assert_eq!(e.network_userid.as_deref(), Some(UID_UUID));
        let e = one(&get("e=pv&p=web&nuid=n1", &cookie));
        assert_eq!(e.network_userid.as_deref(), Some("n1"));
        let e = one(&get("e=pv&p=web&nuid=n1&tnuid=t1", &cookie));
        assert_eq!(e.network_userid.as_deref(), Some("t1"));
        assert_eq!(one(&get("e=pv&p=web", &[])).network_userid, None);
    }

    #[test]
    fn useragent_is_ua_else_the_header() {
        let header = [("http_user_agent", "Mozilla/5.0 (X11)")];
        let e = one(&get("e=pv&p=web", &header));
        assert_eq!(e.useragent.as_deref(), Some("Mozilla/5.0 (X11)"));
        let e = one(&get("e=pv&p=web&ua=Bot%2F1", &header));
        assert_eq!(e.useragent.as_deref(), Some("Bot/1"));
    }

    #[test]
    fn browser_document_and_device_fields() {
        let sid = "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1";
        let e = one(&get(
            &format!(
                "e=pv&p=web&res=1920x1080&vp=1200x800&ds=1180x3000&cd=24&cookie=1&lang=en-GB\
                 &cs=UTF-8&tz=Europe%2FLondon&f_pdf=1&f_java=0&uid=u1&duid=d1&sid={sid}&vid=3\
                 &fp=123&page=Title&tid=42"
            ),
            &[],
        ));
        assert_eq!(
            (e.dvce_screenwidth, e.dvce_screenheight),
            (Some(1920), Some(1080))
        );
        assert_eq!((e.br_viewwidth, e.br_viewheight), (Some(1200), Some(800)));
        assert_eq!((e.doc_width, e.doc_height), (Some(1180), Some(3000)));
        assert_eq!(e.br_colordepth.as_deref(), Some("24"));
        assert_eq!(e.br_cookies, Some(true));
        assert_eq!(e.br_lang.as_deref(), Some("en-GB"));
        assert_eq!(e.doc_charset.as_deref(), Some("UTF-8"));
        assert_eq!(e.os_timezone.as_deref(), Some("Europe/London"));
        assert_eq!(
            (e.br_features_pdf, e.br_features_java),
            (Some(true), Some(false))
        );
        assert_eq!(e.br_features_flash, None);
        assert_eq!(e.user_id.as_deref(), Some("u1"));
        assert_eq!(e.domain_userid.as_deref(), Some("d1"));
        assert_eq!(e.domain_sessionid.as_deref(), Some(sid));
        assert_eq!(e.domain_sessionidx, Some(3));
        assert_eq!(e.user_fingerprint.as_deref(), Some("123"));
        assert_eq!(e.page_title.as_deref(), Some("Title"));
        assert_eq!(e.txn_id, Some(42));
    }

    #[test]
    fn struct_ping_and_ecommerce_fields() {
        let e = one(&get(
            "e=se&p=web&se_ca=shop&se_ac=add&se_la=sku1&se_pr=red&se_va=2.5",
            &[],
        ));
        assert_eq!(e.se_category.as_deref(), Some("shop"));
        assert_eq!(e.se_action.as_deref(), Some("add"));
        assert_eq!(e.se_label.as_deref(), Some("sku1"));
        assert_eq!(e.se_property.as_deref(), Some("red"));
        assert_eq!(e.se_value, Some(2.5));
        let e = one(&get(
            "e=pp&p=web&pp_mix=-1&pp_max=10&pp_miy=0&pp_may=500",
            &[],
        ));
        assert_eq!(
            (
                e.pp_xoffset_min,
                e.pp_xoffset_max,
                e.pp_yoffset_min,
                e.pp_yoffset_max
            ),
            (Some(-1), Some(10), Some(0), Some(500))
        );
        let e = one(&get(
            "e=tr&p=web&tr_id=o1&tr_af=aff&tr_tt=12.5&tr_tx=1.5&tr_sh=3&tr_ci=Paris&tr_st=IDF\
             &tr_co=FR&tr_cu=EUR",
            &[],
        ));
        assert_eq!(e.tr_orderid.as_deref(), Some("o1"));
        assert_eq!(e.tr_affiliation.as_deref(), Some("aff"));
        assert_eq!(
            (e.tr_total, e.tr_tax, e.tr_shipping),
            (Some(12.5), Some(1.5), Some(3.0))
        );
        assert_eq!(e.tr_city.as_deref(), Some("Paris"));
        assert_eq!(e.tr_state.as_deref(), Some("IDF"));
        assert_eq!(e.tr_country.as_deref(), Some("FR"));
        assert_eq!(e.tr_currency.as_deref(), Some("EUR"));
        let e = one(&get(
            "e=ti&p=web&ti_id=o1&ti_sk=s1&ti_nm=Boots&ti_ca=shoes&ti_pr=99.9&ti_qu=2&ti_cu=EUR",
            &[],
        ));
        assert_eq!(e.ti_orderid.as_deref(), Some("o1"));
        assert_eq!(e.ti_sku.as_deref(), Some("s1"));
        assert_eq!(e.ti_name.as_deref(), Some("Boots"));
        assert_eq!(e.ti_category.as_deref(), Some("shoes"));
        assert_eq!(e.ti_price, Some(99.9));
        assert_eq!(e.ti_quantity, Some(2));
        assert_eq!(e.ti_currency.as_deref(), Some("EUR"));
    }

    #[test]
    fn contexts_are_kept_in_order() {
        let co = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{"schema":"iglu:com.acme/a/jsonschema/1-0-0","data":{"n":1}},{"schema":"iglu:com.acme/b/jsonschema/1-0-0","data":{"n":2}}]}"#;
        let e = one(&get(&format!("e=pv&p=web&co={}", encode(co)), &[]));
        let names: Vec<&str> = e.contexts.iter().map(|c| c.schema.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_tp2_post_gives_one_event_per_element_and_bad_ones_apart() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{"e":"pv","p":"web"},{"e":"zz","p":"web"},{"e":"se","p":"web","se_ca":"c","se_ac":"a"}]}"#;
        let hit = line(&[
            ("request_method", "POST"),
            ("request_uri", "/com.snowplowanalytics.snowplow/tp2"),
            ("request_body", body),
        ]);
        let outcome = run(&hit);
        assert_eq!(outcome.events.len(), 2);
        assert_eq!(outcome.bad_rows.len(), 1);
        let ids: Vec<_> = outcome.events.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids[0], Some(derived_event_id(&hit, 0).into()));
        assert_eq!(ids[1], Some(derived_event_id(&hit, 2).into()));
        let row = outcome.bad_rows[0].to_value();
        assert_eq!(row["data"]["failure"]["version"], "tp2");
    }

    #[test]
    fn protocol_violations_are_reported_together() {
        let row = bad(&get(
            "e=zz&p=nowhere&eid=nope&dtm=abc",
            &[("remote_addr", "1.2.3.4")],
        ));
        assert_eq!(
            row["schema"],
            BadRowType::TrackerProtocolViolations.schema()
        );
        let fields: Vec<&str> = row["data"]["failure"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["field"].as_str().unwrap())
            .collect();
        for field in ["e", "p", "dtm"] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
        // An eid that is not a UUID is not refused: the event gets a derived id instead.
        assert!(!fields.contains(&"eid"), "{fields:?}");
        assert_eq!(row["data"]["failure"]["vendor"], SNOWPLOW);
        assert_eq!(row["data"]["payload"]["ipAddress"], "1.2.3.4");
        assert_eq!(row["data"]["payload"]["querystring"][0]["name"], "e");
    }

    #[test]
    fn bad_json_is_a_schema_violation_with_the_partial_event() {
        let row = bad(&get(&format!("e=pv&p=web&eid={EID}&co=%7Bnot"), &[]));
        assert_eq!(row["schema"], BadRowType::SchemaViolations.schema());
        assert_eq!(row["data"]["failure"]["messages"][0]["field"], "co");
        assert_eq!(row["data"]["payload"]["enriched"]["event_id"], EID);
        assert_eq!(
            row["data"]["payload"]["enriched"]["collector_tstamp"],
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn lines_that_are_not_events_are_bad_rows() {
        let row = bad(b"garbage");
        assert_eq!(
            row["schema"],
            BadRowType::CollectorPayloadFormatViolation.schema()
        );
        assert_eq!(row["data"]["payload"], "garbage");
        let row = bad(&line(&[("request_uri", "/favicon.ico")]));
        assert_eq!(row["schema"], BadRowType::AdapterFailures.schema());
        assert_eq!(
            row["data"]["failure"]["messages"][0]["value"],
            "/favicon.ico"
        );
        let post = line(&[
            ("request_method", "POST"),
            ("request_uri", "/com.snowplowanalytics.snowplow/tp2"),
            ("request_body", "{\"not\":1}"),
        ]);
        let row = bad(&post);
        assert_eq!(row["schema"], BadRowType::AdapterFailures.schema());
        assert_eq!(row["data"]["failure"]["messages"][0]["field"], "body");
        let format = LogFormat::canonical();
        let ctx = Context {
            format: &format,
            max_line_bytes: 10,
            etl_tstamp_ms: NOW,
            enrich: &NoEnrichments,
        };
        let outcome = process_line(&get("e=pv&p=web", &[]), &ctx);
        assert_eq!(outcome.bad_rows[0].kind, BadRowType::SizeViolation);
    }

    #[test]
    fn enrichments_run_after_the_atomic_fields_and_their_failures_are_bad_rows() {
        let tag = |event: &mut EnrichedEvent, params: &Params<'_>| {
            assert!(event.event_id.is_some(), "filled before enrichments");
            event.etl_tags = params.get("aid").map(|aid| Cow::Owned(aid.to_owned()));
            Vec::new()
        };
        let outcome = run_with(&get("e=pv&p=web&aid=a1", &[]), &tag);
        assert_eq!(outcome.events[0].etl_tags.as_deref(), Some("a1"));
        let fail = |event: &mut EnrichedEvent, _: &Params<'_>| {
            event.geo_country = Some("FR".into());
            vec!["geo: lookup failed".to_owned(), "ua: bad".to_owned()]
        };
        let outcome = run_with(&get("e=pv&p=web", &[]), &fail);
        assert!(outcome.events.is_empty());
        let row = outcome.bad_rows[0].to_value();
        assert_eq!(row["schema"], BadRowType::EnrichmentFailures.schema());
        assert_eq!(
            row["data"]["failure"]["messages"].as_array().unwrap().len(),
            2
        );
        assert_eq!(row["data"]["payload"]["enriched"]["geo_country"], "FR");
    }
}
