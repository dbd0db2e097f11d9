//! User-agent parsing with uap-core rules: browser, OS and device.
//!
//! The rules are uap-core's `regexes.yaml` (Apache-2.0, vendored in `processor/data/uap-core/`,
//! or a file of the same layout given by path). Their semantics, as uap-core specifies them:
//!
//! - three lists — `user_agent_parsers`, `os_parsers`, `device_parsers` — each tried in order;
//!   the first regex that matches wins; `regex_flag: 'i'` makes it case-insensitive;
//! - a replacement (`family_replacement`, `v1_replacement`…, `os_replacement`,
//!   `os_v1_replacement`…, `device_replacement`, `brand_replacement`, `model_replacement`) has
//!   each `$1`…`$9` substituted by that capture group (empty when it did not take part);
//!   without a replacement a part is its positional group — family/major/minor/patch/patch-minor
//!   are groups 1 to 5; device family and model are group 1, brand has no default;
//! - values are trimmed and an empty value is absent; an absent family is `Other`.
//!
//! Patterns are compiled at [`UserAgent::new`] with the `regex` crate in ASCII mode (`\d`, `\w`
//! and case folding are ASCII, as user agents are); a pattern it cannot compile (a look-around
//! or a back-reference in a user's file) is skipped and counted in
//! [`UserAgent::skipped_rules`]. Every pattern of the vendored uap-core 0.18.0 compiles.
//!
//! From the parse: `br_family` (browser family), `br_version` (`major.minor.patch`), `br_name`
//! (`family major`), `br_type`, `br_renderengine`, `os_family`, `os_name` (`family major.minor`),
//! `os_manufacturer`, `dvce_type`, `dvce_ismobile` (see [`UaInfo`] for how the derived ones are
//! decided) and the derived context
//! `iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0`.
//!
//! Only the first [`MAX_PARSED_UA_BYTES`] bytes of an agent are matched. Results are cached by
//! user agent (a bounded two-generation cache: at most `cache_size` entries, recently used ones
//! survive), since a site's user agents repeat: a hit costs tens of nanoseconds, a miss runs up
//! to the 1,175 rules (a few hundred microseconds).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use plowline_collector::tracker::{JsonText, SchemaKey, SelfDescribing};
use regex::bytes::{Captures, Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// uap-core's `regexes.yaml`, the built-in rules.
pub const BUILT_IN_REGEXES: &str = include_str!("../../data/uap-core/regexes.yaml");

/// The schema of the derived context.
pub const UA_PARSER_CONTEXT_SCHEMA: &str =
    "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0";

/// User agents longer than this are parsed but not cached, so the cache's memory stays bounded.
pub const MAX_CACHED_UA_BYTES: usize = 512;

/// Only the first this many bytes of a user agent are matched against the rules, so a hostile
/// megabyte-long agent costs no more than a long real one (real agents are under 512 bytes).
pub const MAX_PARSED_UA_BYTES: usize = 1024;

/// `[enrichments.user_agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Parse `useragent`. Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A uap-core `regexes.yaml` to use instead of the built-in one (uap-core 0.18.0).
    #[serde(default)]
    pub regexes: Option<PathBuf>,
    /// How many parsed user agents to keep; 0 turns the cache off. Default 10000.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_enabled() -> bool {
    true
}

fn default_cache_size() -> usize {
    10_000
}

impl Default for UserAgentConfig {
    fn default() -> Self {
        UserAgentConfig {
            enabled: default_enabled(),
            regexes: None,
            cache_size: default_cache_size(),
        }
    }
}

/// The layout of `regexes.yaml`. Unknown keys are tolerated, as uap-core adds some over time.
#[derive(Debug, Deserialize)]
struct RegexesFile {
    #[serde(default)]
    user_agent_parsers: Vec<UaSpec>,
    #[serde(default)]
    os_parsers: Vec<OsSpec>,
    #[serde(default)]
    device_parsers: Vec<DeviceSpec>,
}

#[derive(Debug, Deserialize)]
struct UaSpec {
    regex: String,
    regex_flag: Option<String>,
    family_replacement: Option<String>,
    v1_replacement: Option<String>,
    v2_replacement: Option<String>,
    v3_replacement: Option<String>,
    v4_replacement: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OsSpec {
    regex: String,
    regex_flag: Option<String>,
    os_replacement: Option<String>,
    os_v1_replacement: Option<String>,
    os_v2_replacement: Option<String>,
    os_v3_replacement: Option<String>,
    os_v4_replacement: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeviceSpec {
    regex: String,
    regex_flag: Option<String>,
    device_replacement: Option<String>,
    brand_replacement: Option<String>,
    model_replacement: Option<String>,
}

/// One compiled rule: its regex and its replacements, by part.
#[derive(Debug)]
struct Rule<const N: usize> {
    regex: Regex,
    replacements: [Option<Box<str>>; N],
}

/// Family, major, minor, patch, patch-minor — of a browser or an OS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versioned {
    /// `Other` when no rule matched.
    pub family: String,
    /// Version parts, absent when unknown.
    pub major: Option<String>,
    /// See [`Versioned::major`].
    pub minor: Option<String>,
    /// See [`Versioned::major`].
    pub patch: Option<String>,
    /// See [`Versioned::major`].
    pub patch_minor: Option<String>,
}

impl Versioned {
    /// The version parts present, up to `parts` of them, joined with `.`; stops at the first gap.
    fn version(&self, parts: usize) -> Option<String> {
        let mut out = String::new();
        for part in [&self.major, &self.minor, &self.patch, &self.patch_minor]
            .into_iter()
            .take(parts)
        {
            let Some(part) = part else { break };
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
        (!out.is_empty()).then_some(out)
    }

    /// `family version`, or the family alone.
    fn with_version(&self, parts: usize) -> String {
        match self.version(parts) {
            Some(version) => format!("{} {version}", self.family),
            None => self.family.clone(),
        }
    }
}

/// The device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// `Other` when no rule matched; `Spider` for known robots.
    pub family: String,
    /// The maker, when a rule says it.
    pub brand: Option<String>,
    /// The model, when known.
    pub model: Option<String>,
}

/// Everything read from one user agent, and the enriched fields derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct UaInfo {
    /// The browser (or app, or robot).
    pub user_agent: Versioned,
    /// The operating system.
    pub os: Versioned,
    /// The device.
    pub device: Device,
    /// `family major`, e.g. `Chrome 120`.
    pub br_name: String,
    /// `major.minor.patch` as far as known.
    pub br_version: Option<String>,
    /// `Robot` (device `Spider`), `Email Client` (Outlook, Thunderbird, Apple Mail),
    /// `Unknown` (family `Other`), `Browser (mobile)` (mobile or tablet device), else `Browser`.
    pub br_type: &'static str,
    /// From the engine tokens: `TRIDENT`, `EDGE_HTML`, `PRESTO`, `BLINK` (`AppleWebKit` with
    /// `Chrome/` off iOS), `WEBKIT`, `GECKO`; absent otherwise.
    pub br_renderengine: Option<&'static str>,
    /// `family major.minor`, e.g. `Mac OS X 10.15`, `Windows 10`.
    pub os_name: String,
    /// `Microsoft Corporation`, `Apple Inc.` or `Google Inc.` from the OS family; else absent.
    pub os_manufacturer: Option<&'static str>,
    /// `Game console` (PlayStation, Xbox, Nintendo), `Tablet` (iPad, Kindle, tablets, Android
    /// without `Mobile`), `Mobile` (phones, `Mobi` in the agent, mobile OSes), `Computer`
    /// (desktop OSes), else `Unknown` (robots included).
    pub dvce_type: &'static str,
    /// `dvce_type` is `Mobile` or `Tablet`.
    pub dvce_ismobile: bool,
    /// The `ua_parser_context` entity's data.
    pub context: JsonText,
    /// The bot enrichment's pattern verdict on this user agent, computed the first time it is
    /// needed and cached with the parse.
    pub robot_by_patterns: OnceLock<bool>,
}

/// The user-agent enrichment: compiled rules and the cache.
pub struct UserAgent {
    ua_rules: Vec<Rule<5>>,
    os_rules: Vec<Rule<5>>,
    device_rules: Vec<Rule<3>>,
    skipped: usize,
    cache: Option<Mutex<Cache>>,
    /// The context's schema, built once.
    schema: Arc<SchemaKey>,
}

impl std::fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A summary: the rules themselves are a thousand regexes.
        f.debug_struct("UserAgent")
            .field("rules", &self.rules())
            .field("skipped_rules", &self.skipped)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl UserAgent {
    /// Loads and compiles the rules: the configured file, else the built-in uap-core rules.
    pub fn new(config: &UserAgentConfig) -> Result<UserAgent, EnrichmentsError> {
        const WHAT: &str = "user-agent regexes ([enrichments.user_agent] regexes)";
        let (text, path): (Cow<'_, str>, &Path) = match &config.regexes {
            Some(path) => (
                std::fs::read_to_string(path)
                    .map_err(|source| EnrichmentsError::Read {
                        what: WHAT,
                        path: path.clone(),
                        source,
                    })?
                    .into(),
                path,
            ),
            None => (
                BUILT_IN_REGEXES.into(),
                Path::new("<built-in uap-core regexes.yaml>"),
            ),
        };
        let file: RegexesFile =
            serde_yaml::from_str(&text).map_err(|error| EnrichmentsError::Invalid {
                what: WHAT,
                path: path.to_owned(),
                reason: format!("{error}; expected uap-core's regexes.yaml layout"),
            })?;
        if file.user_agent_parsers.is_empty()
            && file.os_parsers.is_empty()
            && file.device_parsers.is_empty()
        {
            return Err(EnrichmentsError::Invalid {
                what: WHAT,
                path: path.to_owned(),
                reason: "it has no user_agent_parsers, os_parsers or device_parsers".to_owned(),
            });
        }
        let mut skipped = 0;
        let ua_rules = compile(file.user_agent_parsers, &mut skipped, |s| {
            (
                s.regex,
                s.regex_flag,
                [
                    s.family_replacement,
                    s.v1_replacement,
                    s.v2_replacement,
                    s.v3_replacement,
                    s.v4_replacement,
                ],
            )
        });
        let os_rules = compile(file.os_parsers, &mut skipped, |s| {
            (
                s.regex,
                s.regex_flag,
                [
                    s.os_replacement,
                    s.os_v1_replacement,
                    s.os_v2_replacement,
                    s.os_v3_replacement,
                    s.os_v4_replacement,
                ],
            )
        });
        let device_rules = compile(file.device_parsers, &mut skipped, |s| {
            (
                s.regex,
                s.regex_flag,
                [
                    s.device_replacement,
                    s.brand_replacement,
                    s.model_replacement,
                ],
            )
        });
        let cache = (config.cache_size > 0).then(|| Mutex::new(Cache::new(config.cache_size)));
        Ok(UserAgent {
            ua_rules,
            os_rules,
            device_rules,
            skipped,
            cache,
            schema: Arc::new(SchemaKey {
                vendor: "com.snowplowanalytics.snowplow".to_owned(),
                name: "ua_parser_context".to_owned(),
                format: "jsonschema".to_owned(),
                model: 1,
                revision: 0,
                addition: 0,
            }),
        })
    }

    /// How many patterns of the rules file the `regex` crate could not compile (they are
    /// skipped).
    pub fn skipped_rules(&self) -> usize {
        self.skipped
    }

    /// How many rules are in use.
    pub fn rules(&self) -> usize {
        self.ua_rules.len() + self.os_rules.len() + self.device_rules.len()
    }

    /// Fills the browser, OS and device fields of `event` from `event.useragent` and pushes the
    /// `ua_parser_context`; does nothing when the user agent is absent or blank. Returns whether
    /// uap-core calls the device a `Spider`.
    pub fn apply(&self, event: &mut EnrichedEvent) -> bool {
        self.apply_parsed(event)
            .is_some_and(|info| info.device.family == "Spider")
    }

    /// [`apply`](UserAgent::apply), returning the parse it used (`None` when the user agent is
    /// absent or blank).
    pub fn apply_parsed(&self, event: &mut EnrichedEvent) -> Option<Arc<UaInfo>> {
        let ua = event
            .useragent
            .as_deref()
            .filter(|ua| !ua.trim().is_empty())?;
        let info = self.lookup(ua);
        let owned = |text: &str| Some(Cow::Owned(text.to_owned()));
        event.br_family = owned(&info.user_agent.family);
        event.br_name = owned(&info.br_name);
        event.br_version = info.br_version.as_deref().and_then(owned);
        event.br_type = owned(info.br_type);
        event.br_renderengine = info.br_renderengine.and_then(owned);
        event.os_family = owned(&info.os.family);
        event.os_name = owned(&info.os_name);
        event.os_manufacturer = info.os_manufacturer.and_then(owned);
        event.dvce_type = owned(info.dvce_type);
        event.dvce_ismobile = Some(info.dvce_ismobile);
        event.derived_contexts.push(SelfDescribing {
            schema: self.schema.clone(),
            data: info.context.clone(),
        });
        Some(info)
    }

    /// The parse of `ua`, from the cache when it is there.
    pub fn lookup(&self, ua: &str) -> Arc<UaInfo> {
        let Some(cache) = &self.cache else {
            return Arc::new(self.parse(ua));
        };
        let cacheable = ua.len() <= MAX_CACHED_UA_BYTES;
        if cacheable {
            if let Some(hit) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(ua) {
                return hit;
            }
        }
        let info = Arc::new(self.parse(ua));
        if cacheable {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(ua, Arc::clone(&info));
        }
        info
    }

    /// Parses `ua` with the rules, without the cache.
    pub fn parse(&self, ua: &str) -> UaInfo {
        let bytes = &ua.as_bytes()[..ua.len().min(MAX_PARSED_UA_BYTES)];
        let versioned = |rules: &[Rule<5>]| {
            rules
                .iter()
                .find_map(|rule| {
                    let caps = rule.regex.captures(bytes)?;
                    let part =
                        |i: usize| resolve(rule.replacements[i].as_deref(), &caps, Some(i + 1));
                    Some(Versioned {
                        family: part(0).unwrap_or_else(|| "Other".to_owned()),
                        major: part(1),
                        minor: part(2),
                        patch: part(3),
                        patch_minor: part(4),
                    })
                })
                .unwrap_or_else(|| Versioned {
                    family: "Other".to_owned(),
                    ..Versioned::default()
                })
        };
        let user_agent = versioned(&self.ua_rules);
        let os = versioned(&self.os_rules);
        let device = self
            .device_rules
            .iter()
            .find_map(|rule| {
                let caps = rule.regex.captures(bytes)?;
                let [family, brand, model] = &rule.replacements;
                Some(Device {
                    family: resolve(family.as_deref(), &caps, Some(1))
                        .unwrap_or_else(|| "Other".to_owned()),
                    brand: resolve(brand.as_deref(), &caps, None),
                    model: resolve(model.as_deref(), &caps, Some(1)),
                })
            })
            .unwrap_or_else(|| Device {
                family: "Other".to_owned(),
                ..Device::default()
            });
        derive(ua, user_agent, os, device)
    }
}

/// Compiles the rules of one list, skipping (and counting) patterns that do not compile.
fn compile<S, const N: usize>(
    specs: Vec<S>,
    skipped: &mut usize,
    split: impl Fn(S) -> (String, Option<String>, [Option<String>; N]),
) -> Vec<Rule<N>> {
    specs
        .into_iter()
        .filter_map(|spec| {
            let (pattern, flag, replacements) = split(spec);
            let regex = RegexBuilder::new(&pattern)
                .case_insensitive(flag.as_deref().is_some_and(|f| f.contains('i')))
                .unicode(false)
                .build();
            match regex {
                Ok(regex) => Some(Rule {
                    regex,
                    replacements: replacements.map(|r| r.map(String::into_boxed_str)),
                }),
                Err(_) => {
                    *skipped += 1;
                    None
                }
            }
        })
        .collect()
}

/// One part: the replacement with `$1`…`$9` substituted, else the capture group `default`;
/// trimmed, absent when empty.
fn resolve(
    replacement: Option<&str>,
    caps: &Captures<'_>,
    default: Option<usize>,
) -> Option<String> {
    let group = |i: usize| caps.get(i).map_or(&b""[..], |m| m.as_bytes());
    let text = match replacement {
        Some(replacement) if replacement.contains('$') => {
            let mut out = Vec::with_capacity(replacement.len() + 16);
            let mut rest = replacement.as_bytes();
            while let Some(at) = rest.iter().position(|&b| b == b'$') {
                out.extend_from_slice(&rest[..at]);
                match rest.get(at + 1) {
                    Some(&digit @ b'1'..=b'9') => {
                        out.extend_from_slice(group(usize::from(digit - b'0')));
                        rest = &rest[at + 2..];
                    }
                    _ => {
                        out.push(b'$');
                        rest = &rest[at + 1..];
                    }
                }
            }
            out.extend_from_slice(rest);
            String::from_utf8_lossy(&out).into_owned()
        }
        Some(replacement) => replacement.to_owned(),
        None => String::from_utf8_lossy(group(default?)).into_owned(),
    };
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// The enriched fields and the context, from the three parses and the raw agent.
fn derive(ua: &str, user_agent: Versioned, os: Versioned, device: Device) -> UaInfo {
    let spider = device.family == "Spider";
    let has = |needle: &str| ua.contains(needle);
    let device_text = |needle: &str| {
        device.family.contains(needle)
            || device.model.as_deref().is_some_and(|m| m.contains(needle))
    };
    let is_ios = matches!(os.family.as_str(), "iOS" | "iPadOS");
    let dvce_type = if spider {
        "Unknown"
    } else if has("PlayStation") || has("Xbox") || has("Nintendo") {
        "Game console"
    } else if device_text("iPad")
        || device_text("Kindle")
        || device_text("Tablet")
        || has("Tablet")
        || (os.family == "Android" && !has("Mobile"))
    {
        "Tablet"
    } else if device_text("iPhone")
        || device_text("iPod")
        || has("Mobi")
        || is_ios
        || matches!(
            os.family.as_str(),
            "Android" | "Windows Phone" | "BlackBerry OS" | "KaiOS" | "Symbian OS" | "Firefox OS"
        )
    {
        "Mobile"
    } else if os.family.starts_with("Windows")
        || matches!(
            os.family.as_str(),
            "Mac OS X"
                | "macOS"
                | "Linux"
                | "Ubuntu"
                | "Fedora"
                | "Debian"
                | "Chrome OS"
                | "ChromeOS"
                | "FreeBSD"
                | "OpenBSD"
                | "NetBSD"
                | "Solaris"
                | "Red Hat"
                | "SUSE"
                | "Mint"
        )
    {
        "Computer"
    } else {
        "Unknown"
    };
    let dvce_ismobile = matches!(dvce_type, "Mobile" | "Tablet");
    let br_type = if spider {
        "Robot"
    } else if matches!(
        user_agent.family.as_str(),
        "Outlook" | "Thunderbird" | "Apple Mail"
    ) {
        "Email Client"
    } else if user_agent.family == "Other" {
        "Unknown"
    } else if dvce_ismobile {
        "Browser (mobile)"
    } else {
        "Browser"
    };
    let br_renderengine = if has("Trident/") || has("MSIE ") {
        Some("TRIDENT")
    } else if has("Edge/") {
        Some("EDGE_HTML")
    } else if has("Presto/") {
        Some("PRESTO")
    } else if has("AppleWebKit/") {
        Some(if (has("Chrome/") || has("Chromium/")) && !is_ios {
            "BLINK"
        } else {
            "WEBKIT"
        })
    } else if has("Gecko/") || (has("rv:") && has("Firefox/")) {
        Some("GECKO")
    } else {
        None
    };
    let os_manufacturer = if os.family.starts_with("Windows") {
        Some("Microsoft Corporation")
    } else if matches!(
        os.family.as_str(),
        "Mac OS X" | "macOS" | "iOS" | "iPadOS" | "watchOS" | "tvOS"
    ) {
        Some("Apple Inc.")
    } else if matches!(os.family.as_str(), "Android" | "Chrome OS" | "ChromeOS") {
        Some("Google Inc.")
    } else {
        None
    };
    let text = |value: &Option<String>| value.clone().map_or(Value::Null, Value::String);
    let mut context = Map::with_capacity(12);
    context.insert("useragentFamily".into(), user_agent.family.clone().into());
    context.insert("useragentMajor".into(), text(&user_agent.major));
    context.insert("useragentMinor".into(), text(&user_agent.minor));
    context.insert("useragentPatch".into(), text(&user_agent.patch));
    context.insert("useragentVersion".into(), user_agent.with_version(3).into());
    context.insert("osFamily".into(), os.family.clone().into());
    context.insert("osMajor".into(), text(&os.major));
    context.insert("osMinor".into(), text(&os.minor));
    context.insert("osPatch".into(), text(&os.patch));
    context.insert("osPatchMinor".into(), text(&os.patch_minor));
    context.insert("osVersion".into(), os.with_version(4).into());
    context.insert("deviceFamily".into(), device.family.clone().into());
    UaInfo {
        br_name: user_agent.with_version(1),
        br_version: user_agent.version(3),
        os_name: os.with_version(2),
        br_type,
        br_renderengine,
        os_manufacturer,
        dvce_type,
        dvce_ismobile,
        context: JsonText::from_value(&Value::Object(context)),
        robot_by_patterns: OnceLock::new(),
        user_agent,
        os,
        device,
    }
}

/// A bounded cache of two generations: lookups hit the young one, then the old one (promoting
/// the entry); when the young one is full it becomes the old one and the previous old one is
/// dropped. At most `capacity` entries; recently used ones survive; no per-hit bookkeeping.
#[derive(Debug)]
struct Cache {
    young: HashMap<Box<str>, Arc<UaInfo>>,
    old: HashMap<Box<str>, Arc<UaInfo>>,
    generation: usize,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        let generation = capacity.div_ceil(2).max(1);
        Cache {
            young: HashMap::with_capacity(generation.min(4096)),
            old: HashMap::new(),
            generation,
        }
    }

    fn get(&mut self, ua: &str) -> Option<Arc<UaInfo>> {
        if let Some(hit) = self.young.get(ua) {
            return Some(Arc::clone(hit));
        }
        let (key, hit) = self.old.remove_entry(ua)?;
        self.put(key, Arc::clone(&hit));
        Some(hit)
    }

    fn insert(&mut self, ua: &str, info: Arc<UaInfo>) {
        self.put(ua.into(), info);
    }

    fn put(&mut self, key: Box<str>, info: Arc<UaInfo>) {
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, info);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests;
