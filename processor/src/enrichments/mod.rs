//! Enrichments: pure, configurable steps that add derived fields to an [`EnrichedEvent`].
//!
//! [`EnrichmentsConfig`] is the `[enrichments]` table of the processor's TOML; every sub-table is
//! optional and every enrichment can be turned off with `enabled = false`. [`Enrichments::new`]
//! validates it and loads the files it names once; [`Enrichments::apply`] then runs, in this
//! order:
//!
//! 1. [`user_agent`] — browser, OS and device from `useragent` (uap-core), `ua_parser_context`;
//! 2. [`bot`] — the IAB-style `spiders_and_robots` context (flag, never drop);
//! 3. [`referer`] — `refr_medium` / `refr_source` / `refr_term`;
//! 4. [`campaign`] — `mkt_*` from the page URL;
//! 5. [`geo`] — geo and ISP fields from MaxMind databases;
//! 6. [`anonymize_ip`] — after every lookup that needs the real address;
//! 7. [`fingerprint`] — `event_fingerprint` over the raw parameters, and the duplicate window;
//! 8. [`pseudonymize`] — last, so that nothing before it sees hashed values.

pub mod anonymize_ip;
pub mod bot;
pub mod campaign;
pub mod fingerprint;
pub mod geo;
pub mod pseudonymize;
pub mod referer;
mod url;
pub mod user_agent;

use std::path::PathBuf;

use plowline_collector::tracker::Params;
use serde::Deserialize;

pub use anonymize_ip::{AnonymizeIp, AnonymizeIpConfig};
pub use bot::{Bot, BotConfig};
pub use campaign::{Campaign, CampaignConfig};
pub use fingerprint::{Fingerprint, FingerprintConfig};
pub use geo::{Geo, GeoConfig};
pub use pseudonymize::{Pseudonymize, PseudonymizeConfig};
pub use referer::{Referer, RefererConfig};
pub use user_agent::{UserAgent, UserAgentConfig};

use crate::event::EnrichedEvent;

/// `[enrichments]`: one optional table per enrichment; an absent table means its defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentsConfig {
    /// `[enrichments.user_agent]`: browser, OS and device from the user agent. On by default.
    #[serde(default)]
    pub user_agent: UserAgentConfig,
    /// `[enrichments.referer]`: referer medium, source and search term. On by default.
    #[serde(default)]
    pub referer: RefererConfig,
    /// `[enrichments.campaign]`: `mkt_*` from the page URL's marketing parameters. On by default.
    #[serde(default)]
    pub campaign: CampaignConfig,
    /// `[enrichments.geo]`: geo and ASN/ISP lookups in MaxMind databases. Off unless a database
    /// is given.
    #[serde(default)]
    pub geo: GeoConfig,
    /// `[enrichments.anonymize_ip]`: mask the end of `user_ipaddress`. Off when the table is
    /// absent; on as soon as the table is written (unless `enabled = false`).
    #[serde(default)]
    pub anonymize_ip: AnonymizeIpConfig,
    /// `[enrichments.pseudonymize]`: salted SHA-256 of chosen fields. Off when the table is
    /// absent; on as soon as the table is written (it then needs a `salt`).
    #[serde(default)]
    pub pseudonymize: PseudonymizeConfig,
    /// `[enrichments.fingerprint]`: `event_fingerprint` and the duplicate window. On by default.
    #[serde(default)]
    pub fingerprint: FingerprintConfig,
    /// `[enrichments.bot]`: the spiders-and-robots flag. On by default.
    #[serde(default)]
    pub bot: BotConfig,
}

/// A configuration that cannot run. Each names the key or the file and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EnrichmentsError {
    /// A file named in the configuration could not be read.
    #[error("cannot read the {what} {path:?}: {source}; check the path and its permissions")]
    Read {
        /// Which file, with its configuration key.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file named in the configuration is not in the expected format.
    #[error("the {what} {path:?} is invalid: {reason}")]
    Invalid {
        /// Which file, with its configuration key.
        what: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("[enrichments.{table}] {key}: {reason}")]
    Config {
        /// The enrichment's table, e.g. `anonymize_ip`.
        table: &'static str,
        /// The key, e.g. `octets`.
        key: &'static str,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// The enrichments, validated and with their files loaded; shared by all events.
#[derive(Debug)]
pub struct Enrichments {
    user_agent: Option<UserAgent>,
    bot: Option<Bot>,
    referer: Option<Referer>,
    campaign: Option<Campaign>,
    geo: Option<Geo>,
    anonymize_ip: Option<AnonymizeIp>,
    fingerprint: Option<Fingerprint>,
    pseudonymize: Option<Pseudonymize>,
}

impl Enrichments {
    /// Validates `config` and loads the files it names.
    pub fn new(config: &EnrichmentsConfig) -> Result<Enrichments, EnrichmentsError> {
        Ok(Enrichments {
            user_agent: enabled(config.user_agent.enabled, || {
                UserAgent::new(&config.user_agent)
            })?,
            bot: enabled(config.bot.enabled, || Bot::new(&config.bot))?,
            referer: enabled(config.referer.enabled, || Referer::new(&config.referer))?,
            campaign: enabled(config.campaign.enabled, || {
                Ok(Campaign::new(&config.campaign))
            })?,
            geo: enabled(config.geo.enabled, || Geo::new(&config.geo))?.flatten(),
            anonymize_ip: enabled(config.anonymize_ip.enabled, || {
                AnonymizeIp::new(&config.anonymize_ip)
            })?,
            fingerprint: enabled(config.fingerprint.enabled, || {
                Ok(Fingerprint::new(&config.fingerprint))
            })?,
            pseudonymize: enabled(config.pseudonymize.enabled, || {
                Pseudonymize::new(&config.pseudonymize)
            })?,
        })
    }

    /// The user-agent enrichment, when enabled: for its [`UserAgent::skipped_rules`] (worth a
    /// warning at start when not zero) and [`UserAgent::rules`].
    pub fn user_agent(&self) -> Option<&UserAgent> {
        self.user_agent.as_ref()
    }

    /// Runs every enabled enrichment on `event`, whose atomic fields the pipeline has filled
    /// from `params` (the event's raw tracker parameters). Returns the enrichment failures, for
    /// an `enrichment_failures` bad row; empty when all went well. Never panics.
    ///
    /// Input the enrichments cannot use is not a failure: a `page_referrer` or `page_url` that
    /// is not an absolute URL, a `user_ipaddress` that is not an address, an unknown user agent
    /// simply leave their fields empty (or `Other`/`unknown`). Today the only
    /// failure is a geo record that cannot be decoded (a corrupt database).
    pub fn apply(&self, event: &mut EnrichedEvent, params: &Params<'_>) -> Vec<String> {
        let mut failures = Vec::new();
        let parsed = self
            .user_agent
            .as_ref()
            .and_then(|user_agent| user_agent.apply_parsed(event));
        if let Some(bot) = &self.bot {
            match &parsed {
                Some(parsed) => bot.apply_parsed(event, parsed),
                None => bot.apply(event, false),
            }
        }
        if let Some(referer) = &self.referer {
            referer.apply(event);
        }
        if let Some(campaign) = &self.campaign {
            campaign.apply(event);
        }
        if let Some(geo) = &self.geo {
            geo.apply(event, &mut failures);
        }
        if let Some(anonymize_ip) = &self.anonymize_ip {
            anonymize_ip.apply(event);
        }
        if let Some(fingerprint) = &self.fingerprint {
            fingerprint.apply(event, params);
        }
        if let Some(pseudonymize) = &self.pseudonymize {
            pseudonymize.apply(event);
        }
        failures
    }
}

impl crate::pipeline::Enrich for Enrichments {
    fn enrich(&self, event: &mut EnrichedEvent, params: &Params<'_>) -> Vec<String> {
        self.apply(event, params)
    }
}

/// Lower-case hexadecimal of `bytes`.
///
/// Written as bytes into a buffer of the final size and checked as UTF-8 once, rather than
/// pushed as `char`s, each of which would go through UTF-8 encoding and a capacity check.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0; bytes.len() * 2];
    for (digits, &byte) in out.chunks_exact_mut(2).zip(bytes) {
        digits[0] = DIGITS[usize::from(byte >> 4)];
        digits[1] = DIGITS[usize::from(byte & 0xf)];
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Builds an enrichment when it is enabled.
fn enabled<T>(
    on: bool,
    build: impl FnOnce() -> Result<T, EnrichmentsError>,
) -> Result<Option<T>, EnrichmentsError> {
    if on {
        build().map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
