//! The Snowplow tracker protocol: tracker hits decoded into typed raw events.
//!
//! Three layers, each a pure function over borrowed input:
//!
//! 1. **Parameters.** [`parse_query`] splits a tp1 query string (GET `/i`, `/ice.png`, or any
//!    path: routing is the caller's job) into [`Params`]; [`parse_tp2`] reads a tp2 POST body
//!    (`payload_data` envelope) into one [`Params`] per event. Both borrow from the input where no
//!    decoding is needed, keep the first of duplicate keys and remember the rest, and flag (never
//!    panic on, never silently alter) values that are not valid UTF-8.
//! 2. **Raw events.** [`RawEvent::from_params`] decodes every parameter of the protocol into typed
//!    fields named after the enriched-event columns they feed (`eid` → `event_id`, `res` →
//!    `dvce_screen`, …), keeping unknown parameters in a map. Every bad parameter is reported in
//!    one go as a [`Violation`], so one bad row can carry all the messages.
//! 3. **Self-describing JSON.** [`SchemaKey`] and [`SelfDescribing`] model Iglu schema URIs and
//!    `{"schema":…,"data":…}` documents; [`parse_unstruct_event`] and [`parse_contexts`] unwrap the
//!    `unstruct_event` and `contexts` envelopes carried by `ue_pr`/`ue_px` and `co`/`cx`. The
//!    `data` of each document is kept as [`JsonText`]: validated once and held in the exact
//!    compact form `serde_json` writes, so output copies it instead of re-serializing a value.
//!
//! # Decisions where the protocol is loose
//!
//! - **Percent-decoding** follows `application/x-www-form-urlencoded`: `+` is a space, `%XX` a
//!   byte. A `%` not followed by two hex digits (`%zz`, a truncated `%4`, the non-standard
//!   `%u00e9`) is kept literally, as browsers and Java's form decoders do; it is not reported.
//!   Only `&` separates pairs (not `;`); the first `=` separates key from value; a pair with
//!   neither key nor value (`&&`, `&=&`) is skipped; a bare key has the empty value.
//! - **Duplicate keys:** the first occurrence wins (a parameter appended to a hit cannot override
//!   what the tracker sent); later ones are kept in [`Params::duplicates`] and become warnings.
//! - **Invalid UTF-8** after decoding is replaced with U+FFFD and flagged
//!   ([`Param::invalid_utf8`]); the event is still decoded, with a warning. A parameter whose
//!   grammar the replacement breaks (a UUID, a number) fails on its own terms.
//! - **Empty values** are treated as absent for every parameter (`refr=` is no referrer), so `e=`
//!   and `p=` count as missing.
//! - **`e` and `p` are required.** Snowplow's protocol requires the platform and has no default
//!   for it; a hit without one is a tracker-protocol violation rather than a guess. `e=ue` also
//!   requires `ue_pr` or `ue_px`, since the event's name comes from its schema.
//! - **Timestamps** (`dtm`, `stm`, `ttm`) are milliseconds since the epoch as digits; a decimal
//!   fraction (`1700000000000.25`, sent by some server-side trackers) is tolerated and truncated.
//!   Values must lie in `0..=253402300799999` (up to the end of year 9999).
//! - **Integers** (`vid`, `cd`, `ti_qu`, `tid`, `pp_*`) must fit an `i32` (Snowplow's column type);
//!   a sign is only accepted where a negative value means something (`pp_*` offsets, `ti_qu`).
//! - **Decimals** (`se_va`, `tr_tt`, `tr_tx`, `tr_sh`, `ti_pr`) keep their exact text
//!   ([`Decimal`]) once validated as a finite JSON-style number.
//! - **UUIDs** (`eid`, `sid`) must be 8-4-4-4-12 hex digits (either case); they are stored as
//!   16 bytes and displayed lower-case.
//! - **Booleans** (`f_*`, `cookie`) are `1` or `0` only.
//! - **Legacy and alternative spellings:** `se_*` win over legacy `ev_*`, `ti_nm` over legacy
//!   `ti_na`, plain `ue_pr`/`co` over base64 `ue_px`/`cx`; the loser is reported as a warning.
//! - **Base64** (`ue_px`, `cx`) accepts both alphabets (`+/` and `-_`, even mixed), padded or not,
//!   and reads a space as `+` (a standard-alphabet `+` left unescaped in a query string has been
//!   turned into a space by form decoding; a space is never valid base64 otherwise).
//! - **tp2 values** that are JSON numbers or booleans are stringified (`true`, `1.5`); `null`,
//!   arrays and objects are kept as their JSON text and reported as violations. A tp2 body must
//!   be UTF-8 (RFC 8259): invalid bytes or lone surrogate escapes make the whole body
//!   [`Tp2Error::NotJson`], since no event boundary can be trusted in it.

mod event;
mod form_json;
mod iglu;
mod json_text;
mod query;
mod scalar;
mod tp2;
mod violation;

pub use event::{BrowserFeatures, EventType, Platform, RawEvent, Rejected};
pub use iglu::{
    parse_contexts, parse_unstruct_event, JsonType, PayloadError, SchemaKey, SchemaKeyError,
    SelfDescribing, SelfDescribingError,
};
pub use json_text::JsonText;
pub use query::{form_decode_into, parse_query, Param, Params};
pub use scalar::{Decimal, Dimensions, Uuid};
pub use tp2::{parse_tp2, Tp2Error};
pub use violation::{Violation, ViolationClass, ViolationKind, VIOLATION_VALUE_MAX_BYTES};
