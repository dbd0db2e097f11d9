//! Typed raw events: every tracker parameter decoded, every problem reported.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::form_json;
use super::iglu::SelfDescribing;
use super::iglu::{decode_base64, parse_contexts, parse_unstruct_event, JsonType, PayloadError};
use super::query::{Param, Params};
use super::scalar::{
    parse_flag, parse_signed, parse_timestamp_ms, parse_unsigned, Decimal, Dimensions, Uuid,
};
use super::violation::{Violation, ViolationClass, ViolationKind};

/// The kind of event (`e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `pv`: a page view.
    PageView,
    /// `pp`: a page ping (activity tracking).
    PagePing,
    /// `se` (legacy `ev`): a structured event.
    Struct,
    /// `ue`: an unstructured (self-describing) event.
    Unstruct,
    /// `tr`: an ecommerce transaction.
    Transaction,
    /// `ti`: an ecommerce transaction item.
    TransactionItem,
    /// Legacy `ad`: an ad impression.
    AdImpression,
}

impl EventType {
    /// The event type sent as `code` in `e`, if any; legacy `ev` is [`EventType::Struct`].
    pub fn from_code(code: &str) -> Option<EventType> {
        Some(match code {
            "pv" => EventType::PageView,
            "pp" => EventType::PagePing,
            "se" | "ev" => EventType::Struct,
            "ue" => EventType::Unstruct,
            "tr" => EventType::Transaction,
            "ti" => EventType::TransactionItem,
            "ad" => EventType::AdImpression,
            _ => return None,
        })
    }

    /// The current tracker code: `pv`, `pp`, `se`, `ue`, `tr`, `ti`, `ad`.
    pub fn code(self) -> &'static str {
        match self {
            EventType::PageView => "pv",
            EventType::PagePing => "pp",
            EventType::Struct => "se",
            EventType::Unstruct => "ue",
            EventType::Transaction => "tr",
            EventType::TransactionItem => "ti",
            EventType::AdImpression => "ad",
        }
    }

    /// The enriched `event` column: `page_view`, `page_ping`, `struct`, `unstruct`,
    /// `transaction`, `transaction_item`, `ad_impression`. Also how it serializes.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::PagePing => "page_ping",
            EventType::Struct => "struct",
            EventType::Unstruct => "unstruct",
            EventType::Transaction => "transaction",
            EventType::TransactionItem => "transaction_item",
            EventType::AdImpression => "ad_impression",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The platform the tracker runs on (`p`). Serializes as its code, the enriched `platform`
/// column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// `web`: web, including mobile web.
    Web,
    /// `mob`: mobile or tablet app.
    Mobile,
    /// `pc`: desktop, laptop or netbook.
    Desktop,
    /// `srv`: server-side app.
    Server,
    /// `app`: general app.
    App,
    /// `tv`: connected TV.
    Tv,
    /// `cnsl`: games console.
    Console,
    /// `iot`: internet of things.
    Iot,
    /// `headset`: AR/VR headset.
    Headset,
}

impl Platform {
    /// The platform with this code, if any.
    pub fn from_code(code: &str) -> Option<Platform> {
        Some(match code {
            "web" => Platform::Web,
            "mob" => Platform::Mobile,
            "pc" => Platform::Desktop,
            "srv" => Platform::Server,
            "app" => Platform::App,
            "tv" => Platform::Tv,
            "cnsl" => Platform::Console,
            "iot" => Platform::Iot,
            "headset" => Platform::Headset,
            _ => return None,
        })
    }

    /// The code: `web`, `mob`, `pc`, `srv`, `app`, `tv`, `cnsl`, `iot`, `headset`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Web => "web",
            Platform::Mobile => "mob",
            Platform::Desktop => "pc",
            Platform::Server => "srv",
            Platform::App => "app",
            Platform::Tv => "tv",
            Platform::Console => "cnsl",
            Platform::Iot => "iot",
            Platform::Headset => "headset",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Browser features (`f_*`), each `1` or `0`; absent when not sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrowserFeatures {
    /// `f_pdf` → `br_features_pdf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdf: Option<bool>,
    /// `f_fla` → `br_features_flash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash: Option<bool>,
    /// `f_java` → `br_features_java`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub java: Option<bool>,
    /// `f_dir` → `br_features_director`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub director: Option<bool>,
    /// `f_qt` → `br_features_quicktime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quicktime: Option<bool>,
    /// `f_realp` → `br_features_realplayer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realplayer: Option<bool>,
    /// `f_wma` → `br_features_windowsmedia`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windowsmedia: Option<bool>,
    /// `f_gears` → `br_features_gears`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gears: Option<bool>,
    /// `f_ag` → `br_features_silverlight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silverlight: Option<bool>,
}

impl BrowserFeatures {
    fn is_empty(&self) -> bool {
        *self == BrowserFeatures::default()
    }
}

/// One tracker event with every protocol parameter decoded and validated.
///
/// Fields are named after the enriched-event columns they feed; each doc names the parameter.
/// Text borrows from the [`Params`] it was decoded from. Absent (or empty) parameters are `None`;
/// serialization leaves them out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawEvent<'p> {
    /// `e`.
    pub event: EventType,
    /// `eid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// `eid` as sent when that is already the canonical (lower-case) text of `event_id`: the
    /// processor then borrows it instead of formatting the UUID again.
    #[serde(skip)]
    pub event_id_text: Option<&'p str>,
    /// `tna`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_tracker: Option<&'p str>,
    /// `aid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<&'p str>,
    /// `p` (required).
    pub platform: Platform,
    /// `tv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v_tracker: Option<&'p str>,
    /// `cv`: the collector version, when a collector added it to the hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v_collector: Option<&'p str>,
    /// `dtm`, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dvce_created_tstamp: Option<i64>,
    /// `stm`, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dvce_sent_tstamp: Option<i64>,
    /// `ttm`, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_tstamp: Option<i64>,
    /// `tz`, an IANA time-zone name (not checked against the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_timezone: Option<&'p str>,
    /// `tid`, the legacy transaction id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<u32>,
    /// `uid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'p str>,
    /// `duid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_userid: Option<&'p str>,
    /// `sid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_sessionid: Option<Uuid>,
    /// `sid` as sent when that is already the canonical (lower-case) text of
    /// `domain_sessionid` (see `event_id_text`).
    #[serde(skip)]
    pub domain_sessionid_text: Option<&'p str>,
    /// `vid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_sessionidx: Option<u32>,
    /// `nuid`: the network user id a collector added to the hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_userid: Option<&'p str>,
    /// `tnuid`: a network user id set by the tracker; wins over `nuid` and the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker_network_userid: Option<&'p str>,
    /// `fp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_fingerprint: Option<&'p str>,
    /// `ip`: overrides the connection's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ipaddress: Option<&'p str>,
    /// `ua`: overrides the `User-Agent` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub useragent: Option<&'p str>,
    /// `url`; when absent, the processor falls back to the `Referer` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_url: Option<&'p str>,
    /// `refr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_referrer: Option<&'p str>,
    /// `page`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_title: Option<&'p str>,
    /// `lang`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br_lang: Option<&'p str>,
    /// `cs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_charset: Option<&'p str>,
    /// `cd`, bits per pixel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br_colordepth: Option<u32>,
    /// `cd` as sent when that is already the canonical decimal text of `br_colordepth` (no
    /// leading zero): the processor then borrows it instead of writing the number again.
    #[serde(skip)]
    pub br_colordepth_text: Option<&'p str>,
    /// `cookie`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br_cookies: Option<bool>,
    /// `res` → `dvce_screenwidth`, `dvce_screenheight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dvce_screen: Option<Dimensions>,
    /// `vp` → `br_viewwidth`, `br_viewheight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br_view: Option<Dimensions>,
    /// `ds` → `doc_width`, `doc_height`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_size: Option<Dimensions>,
    /// `f_*`.
    #[serde(skip_serializing_if = "BrowserFeatures::is_empty")]
    pub br_features: BrowserFeatures,
    /// `pp_mix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pp_xoffset_min: Option<i32>,
    /// `pp_max`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pp_xoffset_max: Option<i32>,
    /// `pp_miy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pp_yoffset_min: Option<i32>,
    /// `pp_may`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pp_yoffset_max: Option<i32>,
    /// `se_ca` (legacy `ev_ca`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_category: Option<&'p str>,
    /// `se_ac` (legacy `ev_ac`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_action: Option<&'p str>,
    /// `se_la` (legacy `ev_la`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_label: Option<&'p str>,
    /// `se_pr` (legacy `ev_pr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_property: Option<&'p str>,
    /// `se_va` (legacy `ev_va`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub se_value: Option<Decimal<'p>>,
    /// `tr_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_orderid: Option<&'p str>,
    /// `tr_af`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_affiliation: Option<&'p str>,
    /// `tr_tt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_total: Option<Decimal<'p>>,
    /// `tr_tx`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_tax: Option<Decimal<'p>>,
    /// `tr_sh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_shipping: Option<Decimal<'p>>,
    /// `tr_ci`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_city: Option<&'p str>,
    /// `tr_st`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_state: Option<&'p str>,
    /// `tr_co`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_country: Option<&'p str>,
    /// `tr_cu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tr_currency: Option<&'p str>,
    /// `ti_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_orderid: Option<&'p str>,
    /// `ti_sk`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_sku: Option<&'p str>,
    /// `ti_nm` (legacy `ti_na`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_name: Option<&'p str>,
    /// `ti_ca`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_category: Option<&'p str>,
    /// `ti_pr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_price: Option<Decimal<'p>>,
    /// `ti_qu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_quantity: Option<i32>,
    /// `ti_cu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ti_currency: Option<&'p str>,
    /// `ue_pr` (plain JSON) or `ue_px` (base64): the event inside the `unstruct_event` envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unstruct_event: Option<SelfDescribing>,
    /// `co` (plain JSON) or `cx` (base64): the entities inside the `contexts` envelope.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<SelfDescribing>,
    /// Parameters outside the protocol, kept so nothing is lost (e.g. legacy `ad_*`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<&'p str, &'p str>,
    /// Problems that did not stop decoding: invalid UTF-8 replaced, duplicate parameters and
    /// superseded spellings ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Violation>,
}

/// An event that broke the protocol: all its violations at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Every parameter that could not be decoded, in protocol order. Never empty.
    pub violations: Vec<Violation>,
    /// Problems that alone would not have stopped decoding (see [`RawEvent::warnings`]).
    pub warnings: Vec<Violation>,
}

impl Rejected {
    /// The bad-row family: [`ViolationClass::Schema`] when every violation is about a JSON
    /// payload, [`ViolationClass::TrackerProtocol`] otherwise.
    pub fn class(&self) -> ViolationClass {
        if self
            .violations
            .iter()
            .all(|v| v.class() == ViolationClass::Schema)
        {
            ViolationClass::Schema
        } else {
            ViolationClass::TrackerProtocol
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.violations.len();
        write!(
            f,
            "{n} invalid parameter{}: ",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, violation) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            violation.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

type Slot<'p> = Option<&'p Param<'p>>;

macro_rules! slots {
    ($($param:ident),* $(,)?) => {
        /// The protocol's parameters, by name.
        #[derive(Default)]
        struct Slots<'p> {
            $($param: Slot<'p>,)*
        }

        impl<'p> Slots<'p> {
            /// Files `param` under its name; false for a parameter outside the protocol.
            fn assign(&mut self, param: &'p Param<'p>) -> bool {
                let slot = match &*param.key {
                    $(stringify!($param) => &mut self.$param,)*
                    _ => return false,
                };
                *slot = Some(param);
                true
            }
        }
    };
}

slots!(
    e, eid, tna, aid, p, tv, cv, dtm, stm, ttm, tz, tid, uid, duid, sid, vid, nuid, tnuid, fp, ip,
    ua, url, refr, page, lang, cs, cd, cookie, res, vp, ds, f_pdf, f_fla, f_java, f_dir, f_qt,
    f_realp, f_wma, f_gears, f_ag, pp_mix, pp_max, pp_miy, pp_may, se_ca, se_ac, se_la, se_pr,
    se_va, ev_ca, ev_ac, ev_la, ev_pr, ev_va, tr_id, tr_af, tr_tt, tr_tx, tr_sh, tr_ci, tr_st,
    tr_co, tr_cu, ti_id, ti_sk, ti_nm, ti_na, ti_ca, ti_pr, ti_qu, ti_cu, ue_pr, ue_px, co, cx,
);

const EXPECT_UUID: &str = "a UUID, 8-4-4-4-12 hex digits";
const EXPECT_TIMESTAMP: &str = "milliseconds since the epoch, 0 to 253402300799999";
const EXPECT_UNSIGNED: &str = "a non-negative integer up to 2147483647";
const EXPECT_SIGNED: &str = "an integer from -2147483648 to 2147483647";
const EXPECT_DECIMAL: &str = "a decimal number such as 12.50";
const EXPECT_DIMENSIONS: &str = "WIDTHxHEIGHT in pixels, such as 1920x1080";
const EXPECT_FLAG: &str = "1 or 0";
const EXPECT_EVENT: &str = "an event type: pv, pp, se, ue, tr, ti (legacy ad, ev)";
const EXPECT_PLATFORM: &str = "a platform: web, mob, pc, srv, app, tv, cnsl, iot, headset";

/// A UUID parameter: the UUID, and its text too when that is already canonical (see
/// [`is_lower_case_uuid`]).
fn parse_uuid(text: &str) -> Option<(Uuid, Option<&str>)> {
    let uuid = Uuid::parse(text)?;
    Some((uuid, is_lower_case_uuid(text).then_some(text)))
}

/// An unsigned parameter: the number, and its text too when that is already how the number is
/// written (no leading zero).
fn parse_canonical_unsigned(text: &str) -> Option<(u32, Option<&str>)> {
    let n = parse_unsigned(text)?;
    let leading_zero = text.len() > 1 && text.starts_with('0');
    Some((n, (!leading_zero).then_some(text)))
}

/// Whether the text of a parsed UUID (hex digits and hyphens) has no upper-case digit, so that
/// it is the UUID's canonical form. `A`–`F` are the only bytes of such a text with bit 6 set and
/// bit 5 clear; the test of every byte without branches is a few vector instructions.
fn is_lower_case_uuid(text: &str) -> bool {
    let Ok(bytes) = <&[u8; 36]>::try_from(text.as_bytes()) else {
        return false;
    };
    let upper = bytes.iter().fold(0, |acc, &b| acc | (b & !(b << 1)));
    upper & 0x40 == 0
}

/// The non-empty text of a slot.
fn text<'p>(slot: Slot<'p>) -> Option<&'p str> {
    slot.map(Param::value).filter(|v| !v.is_empty())
}

/// Whether a slot holds a non-empty value (without decoding it).
fn present(slot: Slot<'_>) -> bool {
    slot.is_some_and(|p| !p.is_empty())
}

/// Collects violations and warnings while fields are decoded.
#[derive(Default)]
struct Decoder {
    violations: Vec<Violation>,
    warnings: Vec<Violation>,
}

impl Decoder {
    fn violation(&mut self, param: &str, value: Option<&str>, kind: ViolationKind) {
        self.violations.push(Violation::new(param, value, kind));
    }

    /// Parses a present slot with `parse`; reports `expected` when it fails.
    #[inline]
    fn parse<'p, T>(
        &mut self,
        slot: Slot<'p>,
        parse: impl FnOnce(&'p str) -> Option<T>,
        expected: &'static str,
    ) -> Option<T> {
        let param = slot?;
        let value = text(slot)?;
        let parsed = parse(value);
        if parsed.is_none() {
            self.violation(&param.key, Some(value), ViolationKind::Invalid { expected });
        }
        parsed
    }

    /// `preferred` when present, else `fallback`; warns when both are.
    fn prefer<'p>(
        &mut self,
        preferred: Slot<'p>,
        fallback: Slot<'p>,
        by: &'static str,
    ) -> Slot<'p> {
        match (present(preferred), text(fallback)) {
            (true, Some(ignored)) => {
                let key = fallback.map_or("", |p| &*p.key);
                self.warnings.push(Violation::new(
                    key,
                    Some(ignored),
                    ViolationKind::Superseded { by },
                ));
                preferred
            }
            (true, None) => preferred,
            (false, _) => fallback.filter(|_| present(fallback)),
        }
    }

    /// Decodes a self-describing payload from its plain (`ue_pr`, `co`) or base64 (`ue_px`,
    /// `cx`) parameter; `read` is the plain one already read from its form-encoded text.
    fn payload<T>(
        &mut self,
        (plain, encoded): (Slot<'_>, Slot<'_>),
        plain_name: &'static str,
        parse: fn(&[u8]) -> Result<T, PayloadError>,
        read: Option<T>,
    ) -> Option<T> {
        let chosen = self.prefer(plain, encoded, plain_name)?;
        if read.is_some() {
            return read;
        }
        let value = chosen.value();
        let result = if present(plain) {
            parse(value.as_bytes())
        } else {
            decode_base64(value).and_then(|json| parse(&json))
        };
        match result {
            Ok(payload) => Some(payload),
            Err(error) => {
                self.violation(&chosen.key, Some(value), ViolationKind::Payload(error));
                None
            }
        }
    }
}

impl<'p> RawEvent<'p> {
    /// Decodes the parameters of one event.
    ///
    /// Every parameter is checked and every problem reported: the error carries all the
    /// violations, in protocol order, so one bad row can list them. Warnings (invalid UTF-8
    /// replaced, duplicates and superseded spellings ignored) do not reject an event; they travel
    /// in [`RawEvent::warnings`] or [`Rejected::warnings`].
    pub fn from_params(params: &'p Params<'_>) -> Result<RawEvent<'p>, Rejected> {
        let mut d = Decoder::default();
        let mut s = Slots::default();
        let mut unknown = BTreeMap::new();
        for param in params {
            if let Some(found @ (JsonType::Null | JsonType::Array | JsonType::Object)) =
                param.json_type
            {
                d.violation(
                    &param.key,
                    Some(param.value()),
                    ViolationKind::NotAString { found },
                );
                continue;
            }
            if !s.assign(param) {
                unknown.insert(&*param.key, param.value());
            }
        }
        // The JSON payloads of a query string are read from their encoded text when they can be
        // (see `form_json`): then they are valid UTF-8, and their decoded text is not needed.
        let read_ue = s
            .ue_pr
            .and_then(|p| form_json::unstruct_event(p.form_encoded()?));
        let read_co = s.co.and_then(|p| form_json::contexts(p.form_encoded()?));
        let was_read = |param: &Param<'_>, slot: Slot<'_>, read: bool| {
            read && slot.is_some_and(|p| std::ptr::eq(p, param))
        };
        for param in params {
            let valid = was_read(param, s.ue_pr, read_ue.is_some())
                || was_read(param, s.co, read_co.is_some());
            if !valid && param.invalid_utf8() {
                d.warnings.push(Violation::new(
                    &param.key,
                    Some(param.value()),
                    ViolationKind::InvalidUtf8,
                ));
            }
        }
        for duplicate in params.duplicates() {
            d.warnings.push(Violation::new(
                &duplicate.key,
                Some(duplicate.value()),
                ViolationKind::Duplicate,
            ));
        }

        let event = match text(s.e) {
            None => {
                let expected = EXPECT_EVENT;
                d.violation("e", None, ViolationKind::Missing { expected });
                None
            }
            Some(_) => d.parse(s.e, EventType::from_code, EXPECT_EVENT),
        };
        // An `eid` that is not a UUID is not the event's identity: it is reported as a warning and
        // the processor derives a deterministic id instead (DESIGN.md, "event_id").
        let event_id = match text(s.eid) {
            Some(value) => parse_uuid(value).or_else(|| {
                d.warnings.push(Violation::new(
                    "eid",
                    Some(value),
                    ViolationKind::Invalid {
                        expected: EXPECT_UUID,
                    },
                ));
                None
            }),
            None => None,
        };
        let platform = match text(s.p) {
            None => {
                let expected = EXPECT_PLATFORM;
                d.violation("p", None, ViolationKind::Missing { expected });
                None
            }
            Some(_) => d.parse(s.p, Platform::from_code, EXPECT_PLATFORM),
        };
        let dvce_created_tstamp = d.parse(s.dtm, parse_timestamp_ms, EXPECT_TIMESTAMP);
        let dvce_sent_tstamp = d.parse(s.stm, parse_timestamp_ms, EXPECT_TIMESTAMP);
        let true_tstamp = d.parse(s.ttm, parse_timestamp_ms, EXPECT_TIMESTAMP);
        let txn_id = d.parse(s.tid, parse_unsigned, EXPECT_UNSIGNED);
        let domain_sessionid = d.parse(s.sid, parse_uuid, EXPECT_UUID);
        let domain_sessionidx = d.parse(s.vid, parse_unsigned, EXPECT_UNSIGNED);
        let br_colordepth = d.parse(s.cd, parse_canonical_unsigned, EXPECT_UNSIGNED);
        let br_cookies = d.parse(s.cookie, parse_flag, EXPECT_FLAG);
        let dvce_screen = d.parse(s.res, Dimensions::parse, EXPECT_DIMENSIONS);
        let br_view = d.parse(s.vp, Dimensions::parse, EXPECT_DIMENSIONS);
        let doc_size = d.parse(s.ds, Dimensions::parse, EXPECT_DIMENSIONS);
        let br_features = BrowserFeatures {
            pdf: d.parse(s.f_pdf, parse_flag, EXPECT_FLAG),
            flash: d.parse(s.f_fla, parse_flag, EXPECT_FLAG),
            java: d.parse(s.f_java, parse_flag, EXPECT_FLAG),
            director: d.parse(s.f_dir, parse_flag, EXPECT_FLAG),
            quicktime: d.parse(s.f_qt, parse_flag, EXPECT_FLAG),
            realplayer: d.parse(s.f_realp, parse_flag, EXPECT_FLAG),
            windowsmedia: d.parse(s.f_wma, parse_flag, EXPECT_FLAG),
            gears: d.parse(s.f_gears, parse_flag, EXPECT_FLAG),
            silverlight: d.parse(s.f_ag, parse_flag, EXPECT_FLAG),
        };
        let pp_xoffset_min = d.parse(s.pp_mix, parse_signed, EXPECT_SIGNED);
        let pp_xoffset_max = d.parse(s.pp_max, parse_signed, EXPECT_SIGNED);
        let pp_yoffset_min = d.parse(s.pp_miy, parse_signed, EXPECT_SIGNED);
        let pp_yoffset_max = d.parse(s.pp_may, parse_signed, EXPECT_SIGNED);
        let se_category = text(d.prefer(s.se_ca, s.ev_ca, "se_ca"));
        let se_action = text(d.prefer(s.se_ac, s.ev_ac, "se_ac"));
        let se_label = text(d.prefer(s.se_la, s.ev_la, "se_la"));
        let se_property = text(d.prefer(s.se_pr, s.ev_pr, "se_pr"));
        let se_va = d.prefer(s.se_va, s.ev_va, "se_va");
        let se_value = d.parse(se_va, Decimal::parse, EXPECT_DECIMAL);
        let tr_total = d.parse(s.tr_tt, Decimal::parse, EXPECT_DECIMAL);
        let tr_tax = d.parse(s.tr_tx, Decimal::parse, EXPECT_DECIMAL);
        let tr_shipping = d.parse(s.tr_sh, Decimal::parse, EXPECT_DECIMAL);
        let ti_name = text(d.prefer(s.ti_nm, s.ti_na, "ti_nm"));
        let ti_price = d.parse(s.ti_pr, Decimal::parse, EXPECT_DECIMAL);
        let ti_quantity = d.parse(s.ti_qu, parse_signed, EXPECT_SIGNED);
        let ue = (s.ue_pr, s.ue_px);
        let unstruct_event = d.payload(ue, "ue_pr", parse_unstruct_event, read_ue);
        if event == Some(EventType::Unstruct) && !present(s.ue_pr) && !present(s.ue_px) {
            let expected = "ue_pr or ue_px, required for e=ue";
            d.violation("ue_pr", None, ViolationKind::Missing { expected });
        }
        let contexts = d
            .payload((s.co, s.cx), "co", parse_contexts, read_co)
            .unwrap_or_default();

        let (Some(event), Some(platform), true) = (event, platform, d.violations.is_empty()) else {
            return Err(Rejected {
                violations: d.violations,
                warnings: d.warnings,
            });
        };
        Ok(RawEvent {
            event,
            event_id: event_id.map(|(uuid, _)| uuid),
            event_id_text: event_id.and_then(|(_, text)| text),
            name_tracker: text(s.tna),
            app_id: text(s.aid),
            platform,
            v_tracker: text(s.tv),
            v_collector: text(s.cv),
            dvce_created_tstamp,
            dvce_sent_tstamp,
            true_tstamp,
            os_timezone: text(s.tz),
            txn_id,
            user_id: text(s.uid),
            domain_userid: text(s.duid),
            domain_sessionid: domain_sessionid.map(|(uuid, _)| uuid),
            domain_sessionid_text: domain_sessionid.and_then(|(_, text)| text),
            domain_sessionidx,
            network_userid: text(s.nuid),
            tracker_network_userid: text(s.tnuid),
            user_fingerprint: text(s.fp),
            user_ipaddress: text(s.ip),
            useragent: text(s.ua),
            page_url: text(s.url),
            page_referrer: text(s.refr),
            page_title: text(s.page),
            br_lang: text(s.lang),
            doc_charset: text(s.cs),
            br_colordepth: br_colordepth.map(|(n, _)| n),
            br_colordepth_text: br_colordepth.and_then(|(_, text)| text),
            br_cookies,
            dvce_screen,
            br_view,
            doc_size,
            br_features,
            pp_xoffset_min,
            pp_xoffset_max,
            pp_yoffset_min,
            pp_yoffset_max,
            se_category,
            se_action,
            se_label,
            se_property,
            se_value,
            tr_orderid: text(s.tr_id),
            tr_affiliation: text(s.tr_af),
            tr_total,
            tr_tax,
            tr_shipping,
            tr_city: text(s.tr_ci),
            tr_state: text(s.tr_st),
            tr_country: text(s.tr_co),
            tr_currency: text(s.tr_cu),
            ti_orderid: text(s.ti_id),
            ti_sku: text(s.ti_sk),
            ti_name,
            ti_category: text(s.ti_ca),
            ti_price,
            ti_quantity,
            ti_currency: text(s.ti_cu),
            unstruct_event,
            contexts,
            unknown,
            warnings: d.warnings,
        })
    }

    /// The network user id the tracker or a collector put in the hit: `tnuid` wins over `nuid`.
    /// `None` means the collector's cookie decides.
    pub fn network_userid_param(&self) -> Option<&'p str> {
        self.tracker_network_userid.or(self.network_userid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{parse_query, parse_tp2};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use expect_test::{expect, Expect};

    const EID: &str = "c6ef3124-b53a-4b13-a233-0088f79dcbcb";
    const SID: &str = "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1";
    const CO: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b"}},{"schema":"iglu:com.acme/user/jsonschema/1-0-0","data":{"name":"Zoë \"Z\" 東京\t🚀","query":"a=1&b=2"}}]}"#;
    const UE: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/button_click/jsonschema/1-0-0","data":{"id":"buy-now","n":2}}}"#;

    /// Percent-encodes everything outside RFC 3986's unreserved set, as the JS tracker does.
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

    fn query(pairs: &[(&str, &str)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Decodes a query string: the event as pretty JSON, or the violations one per line.
    fn decode(query: &str) -> Result<String, String> {
        let params = parse_query(query.as_bytes());
        match RawEvent::from_params(&params) {
            Ok(event) => Ok(serde_json::to_string_pretty(&event).unwrap()),
            Err(rejected) => Err(lines(&rejected.violations)),
        }
    }

    fn lines(violations: &[Violation]) -> String {
        violations.iter().map(|v| format!("{v}\n")).collect()
    }

    fn check_ok(query: &str, expect: Expect) {
        expect.assert_eq(&decode(query).unwrap());
    }

    fn check_err(query: &str, expect: Expect) {
        expect.assert_eq(&decode(query).unwrap_err());
    }

    #[test]
    fn page_view_from_the_js_tracker() {
        let q = query(&[
            ("stm", "1700000000500"),
            ("e", "pv"),
            ("url", "https://shop.example/p?id=1&ref=a=b"),
            ("page", "Café – Shop"),
            ("refr", "https://www.google.com/"),
            ("tv", "js-3.17.0"),
            ("tna", "sp"),
            ("aid", "shop"),
            ("p", "web"),
            ("tz", "Europe/Berlin"),
            ("lang", "de-DE"),
            ("cs", "UTF-8"),
            ("f_pdf", "1"),
            ("f_qt", "0"),
            ("f_realp", "0"),
            ("f_wma", "0"),
            ("f_dir", "0"),
            ("f_fla", "0"),
            ("f_java", "1"),
            ("f_gears", "0"),
            ("f_ag", "0"),
            ("res", "1920x1080"),
            ("cd", "24"),
            ("cookie", "1"),
            ("eid", EID),
            ("dtm", "1700000000123"),
            ("vp", "1280x720"),
            ("ds", "1265x3000"),
            ("vid", "2"),
            ("sid", SID),
            ("duid", "5f7b6d1e-2c3a-4d5e-8f90-123456789abc"),
            ("uid", "user@example.com"),
            ("fp", "3241234"),
            ("co", CO),
        ]);
        check_ok(
            &q,
            expect![[r#"
            {
              "event": "page_view",
              "event_id": "c6ef3124-b53a-4b13-a233-0088f79dcbcb",
              "name_tracker": "sp",
              "app_id": "shop",
              "platform": "web",
              "v_tracker": "js-3.17.0",
              "dvce_created_tstamp": 1700000000123,
              "dvce_sent_tstamp": 1700000000500,
              "os_timezone": "Europe/Berlin",
              "user_id": "user@example.com",
              "domain_userid": "5f7b6d1e-2c3a-4d5e-8f90-123456789abc",
              "domain_sessionid": "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1",
              "domain_sessionidx": 2,
              "user_fingerprint": "3241234",
              "page_url": "https://shop.example/p?id=1&ref=a=b",
              "page_referrer": "https://www.google.com/",
              "page_title": "Café – Shop",
              "br_lang": "de-DE",
              "doc_charset": "UTF-8",
              "br_colordepth": 24,
              "br_cookies": true,
              "dvce_screen": {
                "width": 1920,
                "height": 1080
              },
              "br_view": {
                "width": 1280,
                "height": 720
              },
              "doc_size": {
                "width": 1265,
                "height": 3000
              },
              "br_features": {
                "pdf": true,
                "flash": false,
                "java": true,
                "director": false,
                "quicktime": false,
                "realplayer": false,
                "windowsmedia": false,
                "gears": false,
                "silverlight": false
              },
              "contexts": [
                {
                  "schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
                  "data": {
                    "id": "a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b"
                  }
                },
                {
                  "schema": "iglu:com.acme/user/jsonschema/1-0-0",
                  "data": {
                    "name": "Zoë \"Z\" 東京\t🚀",
                    "query": "a=1&b=2"
                  }
                }
              ]
            }"#]],
        );
    }

    #[test]
    fn page_ping_offsets_may_be_negative() {
        let q = "e=pp&p=web&pp_mix=-12&pp_max=0&pp_miy=-40&pp_may=2400";
        check_ok(
            q,
            expect![[r#"
            {
              "event": "page_ping",
              "platform": "web",
              "pp_xoffset_min": -12,
              "pp_xoffset_max": 0,
              "pp_yoffset_min": -40,
              "pp_yoffset_max": 2400
            }"#]],
        );
    }

    #[test]
    fn struct_event_and_legacy_ev() {
        check_ok(
            "e=se&p=web&se_ca=video&se_ac=play&se_la=intro&se_pr=hd&se_va=12.50",
            expect![[r#"
                {
                  "event": "struct",
                  "platform": "web",
                  "se_category": "video",
                  "se_action": "play",
                  "se_label": "intro",
                  "se_property": "hd",
                  "se_value": "12.50"
                }"#]],
        );
        let params = parse_query(b"e=ev&p=mob&ev_ca=video&ev_ac=pause&ev_va=3&se_va=4");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.event, EventType::Struct);
        assert_eq!(event.platform, Platform::Mobile);
        assert_eq!(event.se_category, Some("video"));
        assert_eq!(event.se_action, Some("pause"));
        assert_eq!(event.se_value.unwrap().as_str(), "4");
        expect![[r#"
            ev_va="3": ignored in favour of se_va
        "#]]
        .assert_eq(&lines(&event.warnings));
    }

    #[test]
    fn unstruct_event_plain_and_base64_in_every_spelling() {
        let plain = query(&[("e", "ue"), ("p", "web"), ("ue_pr", UE)]);
        check_ok(
            &plain,
            expect![[r#"
            {
              "event": "unstruct",
              "platform": "web",
              "unstruct_event": {
                "schema": "iglu:com.acme/button_click/jsonschema/1-0-0",
                "data": {
                  "id": "buy-now",
                  "n": 2
                }
              }
            }"#]],
        );
        let spellings = [
            STANDARD.encode(UE),
            STANDARD.encode(UE).trim_end_matches('=').to_owned(),
            URL_SAFE.encode(UE),
            URL_SAFE_NO_PAD.encode(UE),
        ];
        for encoded in spellings {
            let q = query(&[("e", "ue"), ("p", "web"), ("ue_px", &encoded)]);
            let params = parse_query(q.as_bytes());
            let event = RawEvent::from_params(&params).unwrap();
            let ue = event.unstruct_event.unwrap();
            assert_eq!(ue.schema.name, "button_click", "{encoded}");
            assert_eq!(ue.data.to_value()["id"], "buy-now");
        }
        // A standard-alphabet `+` sent unescaped becomes a space in form decoding.
        let json = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":{"k":"~~~>>>"}}}"#;
        let encoded = STANDARD.encode(json);
        assert!(encoded.contains('+'));
        let q = format!("e=ue&p=web&ue_px={encoded}");
        let params = parse_query(q.as_bytes());
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.unstruct_event.unwrap().data.to_value()["k"], "~~~>>>");
    }

    #[test]
    fn unstruct_event_needs_a_payload() {
        check_err(
            "e=ue&p=web",
            expect![[r#"
            ue_pr: missing: expected ue_pr or ue_px, required for e=ue
        "#]],
        );
    }

    #[test]
    fn contexts_from_co_and_cx_agree() {
        let plain = query(&[("e", "pv"), ("p", "web"), ("co", CO)]);
        let encoded = query(&[
            ("e", "pv"),
            ("p", "web"),
            ("cx", &URL_SAFE_NO_PAD.encode(CO)),
        ]);
        let (plain, encoded) = (
            parse_query(plain.as_bytes()),
            parse_query(encoded.as_bytes()),
        );
        let plain = RawEvent::from_params(&plain).unwrap();
        let encoded = RawEvent::from_params(&encoded).unwrap();
        assert_eq!(plain.contexts, encoded.contexts);
        assert_eq!(
            plain.contexts[1].data.to_value()["name"],
            "Zoë \"Z\" 東京\t🚀"
        );
        assert_eq!(plain.contexts[1].data.to_value()["query"], "a=1&b=2");
    }

    #[test]
    fn transaction_and_items() {
        check_ok(
            "e=tr&p=web&tr_id=order-1&tr_af=web%20shop&tr_tt=123.45&tr_tx=20.1&tr_sh=0&tr_ci=Berlin&tr_st=BE&tr_co=DE&tr_cu=EUR",
            expect![[r#"
                {
                  "event": "transaction",
                  "platform": "web",
                  "tr_orderid": "order-1",
                  "tr_affiliation": "web shop",
                  "tr_total": "123.45",
                  "tr_tax": "20.1",
                  "tr_shipping": "0",
                  "tr_city": "Berlin",
                  "tr_state": "BE",
                  "tr_country": "DE",
                  "tr_currency": "EUR"
                }"#]],
        );
        check_ok(
            "e=ti&p=web&ti_id=order-1&ti_sk=SKU-9&ti_na=Legacy+name&ti_ca=Books&ti_pr=9.99&ti_qu=3&ti_cu=EUR",
            expect![[r#"
                {
                  "event": "transaction_item",
                  "platform": "web",
                  "ti_orderid": "order-1",
                  "ti_sku": "SKU-9",
                  "ti_name": "Legacy name",
                  "ti_category": "Books",
                  "ti_price": "9.99",
                  "ti_quantity": 3,
                  "ti_currency": "EUR"
                }"#]],
        );
        let params = parse_query(b"e=ti&p=web&ti_nm=New&ti_na=Old");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.ti_name, Some("New"));
        assert_eq!(event.warnings.len(), 1);
    }

    #[test]
    fn legacy_ad_impression_keeps_unknown_params() {
        check_ok(
            "e=ad&p=web&ad_ba=banner-1&ad_ca=campaign-7&cv=clj-1.1.0&nuid=abc&tnuid=def",
            expect![[r#"
                {
                  "event": "ad_impression",
                  "platform": "web",
                  "v_collector": "clj-1.1.0",
                  "network_userid": "abc",
                  "tracker_network_userid": "def",
                  "unknown": {
                    "ad_ba": "banner-1",
                    "ad_ca": "campaign-7"
                  }
                }"#]],
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let q = query(&[
            ("e", "pv"),
            ("p", "web"),
            ("eid", "not-a-uuid"),
            ("sid", "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1dz"),
            ("dtm", "yesterday"),
            ("stm", "-5"),
            ("vid", "1.5"),
            ("res", "1920*1080"),
            ("f_pdf", "yes"),
            ("cookie", "true"),
            ("pp_mix", "99999999999"),
            ("se_va", "NaN"),
            ("ti_qu", "two"),
            ("ue_px", "!!!not base64"),
            (
                "co",
                r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"id":1}]}"#,
            ),
        ]);
        check_err(
            &q,
            expect![[r#"
                dtm="yesterday": expected milliseconds since the epoch, 0 to 253402300799999
                stm="-5": expected milliseconds since the epoch, 0 to 253402300799999
                sid="0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1dz": expected a UUID, 8-4-4-4-12 hex digits
                vid="1.5": expected a non-negative integer up to 2147483647
                cookie="true": expected 1 or 0
                res="1920*1080": expected WIDTHxHEIGHT in pixels, such as 1920x1080
                f_pdf="yes": expected 1 or 0
                pp_mix="99999999999": expected an integer from -2147483648 to 2147483647
                se_va="NaN": expected a decimal number such as 12.50
                ti_qu="two": expected an integer from -2147483648 to 2147483647
                ue_px="!!!not base64": invalid base64: unexpected '!' at offset 0
                co="{\"schema\":\"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0\",\"data\":[{\"id\":1}]}": context entity 0 is not self-describing JSON: missing the "schema" key
            "#]],
        );
    }

    #[test]
    fn missing_and_unknown_event_type_and_platform() {
        check_err(
            "aid=x",
            expect![[r#"
            e: missing: expected an event type: pv, pp, se, ue, tr, ti (legacy ad, ev)
            p: missing: expected a platform: web, mob, pc, srv, app, tv, cnsl, iot, headset
        "#]],
        );
        check_err(
            "e=&p=",
            expect![[r#"
            e: missing: expected an event type: pv, pp, se, ue, tr, ti (legacy ad, ev)
            p: missing: expected a platform: web, mob, pc, srv, app, tv, cnsl, iot, headset
        "#]],
        );
        check_err(
            "e=click&p=desktop",
            expect![[r#"
            e="click": expected an event type: pv, pp, se, ue, tr, ti (legacy ad, ev)
            p="desktop": expected a platform: web, mob, pc, srv, app, tv, cnsl, iot, headset
        "#]],
        );
    }

    #[test]
    fn json_payload_errors_name_their_parameter() {
        let not_json = query(&[("e", "pv"), ("p", "web"), ("co", "{\"schema\":")]);
        check_err(
            &not_json,
            expect![[r#"
            co="{\"schema\":": invalid JSON: EOF while parsing a value at line 1 column 10
        "#]],
        );
        let not_sd = query(&[("e", "ue"), ("p", "web"), ("ue_pr", r#"{"event":"click"}"#)]);
        check_err(
            &not_sd,
            expect![[r#"
            ue_pr="{\"event\":\"click\"}": envelope is not self-describing JSON: missing the "schema" key
        "#]],
        );
        let bad_b64 = "e=pv&p=web&cx=e30%3D%3D%3D";
        check_err(
            bad_b64,
            expect![[r#"
            cx="e30===": invalid base64: unexpected '=' at offset 3
        "#]],
        );
        let b64_not_json = format!("e=pv&p=web&cx={}", URL_SAFE_NO_PAD.encode("not json"));
        check_err(
            &b64_not_json,
            expect![[r#"
            cx="bm90IGpzb24": invalid JSON: expected ident at line 1 column 2
        "#]],
        );

        let params = parse_query(not_json.as_bytes());
        let rejected = RawEvent::from_params(&params).unwrap_err();
        assert_eq!(rejected.class(), ViolationClass::Schema);
        let params = parse_query(b"e=pv&p=web&cx=%%%");
        let rejected = RawEvent::from_params(&params).unwrap_err();
        assert_eq!(rejected.class(), ViolationClass::TrackerProtocol);
    }

    #[test]
    fn long_values_are_truncated_in_violations() {
        let q = format!("e=pv&p=web&dtm={}", "9".repeat(5000));
        let params = parse_query(q.as_bytes());
        let rejected = RawEvent::from_params(&params).unwrap_err();
        let value = rejected.violations[0].value.as_deref().unwrap();
        assert!(value.len() < 600 && value.ends_with('…'));
    }

    #[test]
    fn invalid_utf8_is_a_warning_not_a_rejection() {
        let params = parse_query(b"e=pv&p=web&page=caf%E9&x%FF=1&e=se");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.page_title, Some("caf\u{fffd}"));
        assert_eq!(event.unknown.get("x\u{fffd}"), Some(&"1"));
        expect![[r#"
            page="caf�": not valid UTF-8; invalid bytes replaced with U+FFFD
            x�="1": not valid UTF-8; invalid bytes replaced with U+FFFD
            e="se": duplicate parameter ignored; the first is kept
        "#]]
        .assert_eq(&lines(&event.warnings));
        // An eid that is not a UUID is no identity: a warning, and the processor derives one.
        let params = parse_query(b"e=pv&p=web&eid=%FF");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.event_id, None);
        expect![[r#"
            eid="�": not valid UTF-8; invalid bytes replaced with U+FFFD
            eid="�": expected a UUID, 8-4-4-4-12 hex digits
        "#]]
        .assert_eq(&lines(&event.warnings));
    }

    #[test]
    fn payloads_read_from_their_encoded_text_decode_like_the_rest() {
        // `co` read straight from its encoded text: the same entities, no warning.
        let co = query(&[("e", "pv"), ("p", "web"), ("co", CO), ("x%FF", "1")]);
        let params = parse_query(co.as_bytes());
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(Ok(event.contexts), parse_contexts(CO.as_bytes()));
        assert_eq!(lines(&event.warnings).lines().count(), 1);
        // Invalid UTF-8 once decoded: the usual path, which replaces it and warns in order.
        let text = CO.replacen("\"query\"", "\"qu%E9ry\"", 1);
        assert_ne!(text, CO);
        let bad = format!(
            "e=pv&a=%FF&co={}&p=web&b=%FF",
            encode(&text).replace("%25E9", "%E9")
        );
        let params = parse_query(bad.as_bytes());
        let warnings = match RawEvent::from_params(&params) {
            Ok(event) => event.warnings,
            Err(rejected) => rejected.warnings,
        };
        let keys: Vec<&str> = warnings.iter().map(|w| &*w.param).collect();
        assert_eq!(keys, ["a", "co", "b"]);
    }

    #[test]
    fn timestamps_tolerate_a_fraction() {
        let params = parse_query(b"e=pv&p=web&dtm=1700000000123.9&ttm=1700000000000");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.dvce_created_tstamp, Some(1_700_000_000_123));
        assert_eq!(event.true_tstamp, Some(1_700_000_000_000));
    }

    #[test]
    fn empty_values_are_absent() {
        let params = parse_query(b"e=pv&p=web&refr=&eid=&vid=&co=&ue_px=");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.page_referrer, None);
        assert_eq!(event.event_id, None);
        assert!(event.contexts.is_empty());
    }

    #[test]
    fn network_user_id_prefers_tnuid() {
        let params = parse_query(b"e=pv&p=web&nuid=a&tnuid=b");
        let event = RawEvent::from_params(&params).unwrap();
        assert_eq!(event.network_userid_param(), Some("b"));
        let params = parse_query(b"e=pv&p=web&nuid=a");
        assert_eq!(
            RawEvent::from_params(&params)
                .unwrap()
                .network_userid_param(),
            Some("a")
        );
    }

    #[test]
    fn every_event_type_and_platform_round_trips() {
        for code in ["pv", "pp", "se", "ue", "tr", "ti", "ad"] {
            assert_eq!(EventType::from_code(code).unwrap().code(), code);
        }
        assert_eq!(EventType::from_code("ev"), Some(EventType::Struct));
        assert_eq!(EventType::from_code("PV"), None);
        for code in [
            "web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot", "headset",
        ] {
            assert_eq!(Platform::from_code(code).unwrap().as_str(), code);
        }
    }

    #[test]
    fn tp2_events_decode_like_query_strings() {
        let body = format!(
            r#"{{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[{},{},{}]}}"#,
            serde_json::json!({"e": "pv", "p": "web", "eid": EID, "dtm": "1700000000123", "co": CO}),
            serde_json::json!({"e": "se", "p": "web", "se_ca": "c", "se_va": 2.5, "vid": 4, "cookie": 1, "dtm": 1700000000123u64}),
            serde_json::json!({"e": "pv", "p": "web", "co": {"schema": "x"}, "f_pdf": true}),
        );
        let events = parse_tp2(body.as_bytes()).unwrap();
        let decoded: Vec<_> = events.iter().map(RawEvent::from_params).collect();
        let first = decoded[0].as_ref().unwrap();
        assert_eq!(first.event_id.unwrap().to_string(), EID);
        assert_eq!(first.contexts.len(), 2);
        let second = decoded[1].as_ref().unwrap();
        assert_eq!(second.se_value.unwrap().as_str(), "2.5");
        assert_eq!(second.domain_sessionidx, Some(4));
        assert_eq!(second.br_cookies, Some(true));
        assert_eq!(second.dvce_created_tstamp, Some(1_700_000_000_123));
        let third = decoded[2].as_ref().unwrap_err();
        expect![[r#"
            co="{\"schema\":\"x\"}": expected a string (or a number or boolean), found object
            f_pdf="true": expected 1 or 0
        "#]]
        .assert_eq(&lines(&third.violations));
    }

    proptest::proptest! {
        #[test]
        fn an_unsigned_text_is_kept_exactly_when_it_is_the_canonical_form(text in "[0-9]{1,12}") {
            if let Some((n, kept)) = parse_canonical_unsigned(&text) {
                let canonical = n.to_string();
                proptest::prop_assert_eq!(kept, (text == canonical).then_some(text.as_str()));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_uuid_text_is_kept_exactly_when_it_is_the_canonical_form(
            text in "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        ) {
            let (uuid, kept) = parse_uuid(&text).unwrap();
            let canonical = uuid.to_string();
            proptest::prop_assert_eq!(kept, (text == canonical).then_some(text.as_str()));
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_and_always_explains(
            pairs in proptest::collection::vec(
                (
                    proptest::sample::select(&[
                        "e", "p", "eid", "sid", "dtm", "vid", "res", "f_pdf", "pp_mix", "se_va",
                        "ev_va", "ti_na", "ti_qu", "ue_pr", "ue_px", "co", "cx", "zz",
                    ][..]),
                    "[0-9a-fx.e-]{0,12}|pv|ue|web|.{0,24}",
                ),
                0..16,
            ),
        ) {
            let q = pairs
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let params = parse_query(q.as_bytes());
            if let Err(rejected) = RawEvent::from_params(&params) {
                proptest::prop_assert!(!rejected.violations.is_empty());
            }
        }
    }
}
