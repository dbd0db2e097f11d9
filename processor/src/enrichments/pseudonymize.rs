//! PII pseudonymization: replaces chosen fields with the lower-case hexadecimal SHA-256 of the
//! salt followed by the value (`hex(sha256(salt ‖ value))`, 64 characters).
//!
//! The same value and salt always give the same digest, so joins and distinct counts still work;
//! without the salt the digest cannot be reversed by hashing candidate values. It runs last, after
//! every enrichment that reads the real values (geo, fingerprint).

use std::borrow::Cow;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// `[enrichments.pseudonymize]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymizeConfig {
    /// Hash the fields. `true` as soon as the table is written; off when it is absent.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The secret prepended to each value before hashing; required, at least 16 bytes. Keep it
    /// secret and stable: changing it changes every digest.
    #[serde(default)]
    pub salt: String,
    /// The fields to hash, by their enriched-event names. One of `user_id`, `user_ipaddress`,
    /// `user_fingerprint`, `domain_userid`, `network_userid`, `domain_sessionid`,
    /// `refr_domain_userid`, `ip_organization`, `ip_domain`. Default
    /// `["user_id", "user_ipaddress", "domain_userid", "network_userid"]`.
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
}

fn default_enabled() -> bool {
    true
}

fn default_fields() -> Vec<String> {
    [
        "user_id",
        "user_ipaddress",
        "domain_userid",
        "network_userid",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Default for PseudonymizeConfig {
    /// The configuration when the table is absent: off.
    fn default() -> Self {
        PseudonymizeConfig {
            enabled: false,
            salt: String::new(),
            fields: default_fields(),
        }
    }
}

/// A field that can be pseudonymized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    UserId,
    UserIpaddress,
    UserFingerprint,
    DomainUserid,
    NetworkUserid,
    DomainSessionid,
    RefrDomainUserid,
    IpOrganization,
    IpDomain,
}

const FIELDS: [(&str, Field); 9] = [
    ("user_id", Field::UserId),
    ("user_ipaddress", Field::UserIpaddress),
    ("user_fingerprint", Field::UserFingerprint),
    ("domain_userid", Field::DomainUserid),
    ("network_userid", Field::NetworkUserid),
    ("domain_sessionid", Field::DomainSessionid),
    ("refr_domain_userid", Field::RefrDomainUserid),
    ("ip_organization", Field::IpOrganization),
    ("ip_domain", Field::IpDomain),
];

impl Field {
    fn of<'e, 'a>(event: &'e mut EnrichedEvent<'a>, field: Field) -> &'e mut Option<Cow<'a, str>> {
        match field {
            Field::UserId => &mut event.user_id,
            Field::UserIpaddress => &mut event.user_ipaddress,
            Field::UserFingerprint => &mut event.user_fingerprint,
            Field::DomainUserid => &mut event.domain_userid,
            Field::NetworkUserid => &mut event.network_userid,
            Field::DomainSessionid => &mut event.domain_sessionid,
            Field::RefrDomainUserid => &mut event.refr_domain_userid,
            Field::IpOrganization => &mut event.ip_organization,
            Field::IpDomain => &mut event.ip_domain,
        }
    }
}

/// The pseudonymization, validated.
#[derive(Clone)]
pub struct Pseudonymize {
    /// The hasher with the salt already fed, cloned per value.
    salted: Sha256,
    fields: Vec<Field>,
}

impl std::fmt::Debug for Pseudonymize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The salt is a secret: never printed.
        f.debug_struct("Pseudonymize")
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// The shortest salt accepted, in bytes.
pub const MIN_SALT_BYTES: usize = 16;

impl Pseudonymize {
    /// Checks the salt and the field names.
    pub fn new(config: &PseudonymizeConfig) -> Result<Pseudonymize, EnrichmentsError> {
        if config.salt.len() < MIN_SALT_BYTES {
            return Err(EnrichmentsError::Config {
                table: "pseudonymize",
                key: "salt",
                reason: format!(
                    "a secret of at least {MIN_SALT_BYTES} bytes is required (found {}); \
                     generate one, e.g. `openssl rand -hex 32`",
                    config.salt.len()
                ),
            });
        }
        let mut fields = Vec::with_capacity(config.fields.len());
        for name in &config.fields {
            let Some(&(_, field)) = FIELDS.iter().find(|(known, _)| known == name) else {
                let known: Vec<&str> = FIELDS.iter().map(|(known, _)| *known).collect();
                return Err(EnrichmentsError::Config {
                    table: "pseudonymize",
                    key: "fields",
                    reason: format!("unknown field {name:?}; use any of {}", known.join(", ")),
                });
            };
            if !fields.contains(&field) {
                fields.push(field);
            }
        }
        let mut salted = Sha256::new();
        salted.update(config.salt.as_bytes());
        Ok(Pseudonymize { salted, fields })
    }

    /// Replaces each configured field that has a value with its digest.
    pub fn apply(&self, event: &mut EnrichedEvent) {
        for &field in &self.fields {
            let slot = Field::of(event, field);
            if let Some(value) = slot.as_deref() {
                *slot = Some(Cow::Owned(self.digest(value)));
            }
        }
    }

    /// `hex(sha256(salt ‖ value))`.
    pub fn digest(&self, value: &str) -> String {
        let mut hasher = self.salted.clone();
        hasher.update(value.as_bytes());
        super::hex(&hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "0123456789abcdef-test-salt";

    fn config(fields: &[&str]) -> PseudonymizeConfig {
        PseudonymizeConfig {
            enabled: true,
            salt: SALT.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn hashes_the_chosen_fields_only() {
        let mut event = EnrichedEvent {
            user_id: Some("alice@example.com".into()),
            user_ipaddress: Some("203.0.113.42".into()),
            domain_userid: Some("d-1".into()),
            ..EnrichedEvent::default()
        };
        Pseudonymize::new(&config(&["user_id", "network_userid"]))
            .unwrap()
            .apply(&mut event);
        let mut expected = Sha256::new();
        expected.update(SALT.as_bytes());
        expected.update(b"alice@example.com");
        let expected: String = expected
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(event.user_id.as_deref(), Some(expected.as_str()));
        assert_eq!(event.user_ipaddress.as_deref(), Some("203.0.113.42"));
        assert_eq!(event.domain_userid.as_deref(), Some("d-1"));
        assert_eq!(event.network_userid, None);
    }

    #[test]
    fn digest_depends_on_salt_and_value() {
        let a = Pseudonymize::new(&config(&[])).unwrap();
        let b = Pseudonymize::new(&PseudonymizeConfig {
            salt: "another-salt-of-16-bytes".into(),
            ..config(&[])
        })
        .unwrap();
        assert_eq!(a.digest("x"), a.digest("x"));
        assert_ne!(a.digest("x"), a.digest("y"));
        assert_ne!(a.digest("x"), b.digest("x"));
        assert_eq!(a.digest("x").len(), 64);
        assert!(!format!("{a:?}").contains(SALT));
    }

    #[test]
    fn refuses_short_salt_and_unknown_fields() {
        let short = Pseudonymize::new(&PseudonymizeConfig {
            salt: "short".into(),
            ..config(&[])
        })
        .unwrap_err()
        .to_string();
        assert!(
            short.starts_with("[enrichments.pseudonymize] salt"),
            "{short}"
        );
        let unknown = Pseudonymize::new(&config(&["page_url"]))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"page_url\"") && unknown.contains("user_id"),
            "{unknown}"
        );
    }
}
