//! IP anonymization: masks the end of `user_ipaddress`.
//!
//! - IPv4: the last `octets` octets become `x`: `203.0.113.42` with `octets = 1` →
//!   `203.0.113.x`; with 4 → `x.x.x.x`.
//! - IPv6: the address is written out in full — eight lower-case hexadecimal segments without
//!   leading zeros and without `::` compression — and the last `segments` segments become `x`:
//!   `2001:DB8::8a2e:370:7334` with `segments = 2` → `2001:db8:0:0:0:8a2e:x:x`. An IPv4-mapped
//!   address (`::ffff:203.0.113.42`) is treated as the IPv4 address it carries.
//! - Anything that is not an IP address is left unchanged.
//!
//! It runs after every enrichment that needs the real address (geo).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// `[enrichments.anonymize_ip]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymizeIpConfig {
    /// Mask `user_ipaddress`. `true` as soon as the table is written; off when it is absent.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// IPv4 octets to mask, from the end: 1 to 4. Default 1.
    #[serde(default = "default_octets")]
    pub octets: u8,
    /// IPv6 segments (16-bit groups) to mask, from the end: 1 to 8. Default 2.
    #[serde(default = "default_segments")]
    pub segments: u8,
}

fn default_enabled() -> bool {
    true
}

fn default_octets() -> u8 {
    1
}

fn default_segments() -> u8 {
    2
}

impl Default for AnonymizeIpConfig {
    /// The configuration when the table is absent: off.
    fn default() -> Self {
        AnonymizeIpConfig {
            enabled: false,
            octets: default_octets(),
            segments: default_segments(),
        }
    }
}

/// The IP anonymization, validated.
#[derive(Debug, Clone, Copy)]
pub struct AnonymizeIp {
    octets: usize,
    segments: usize,
}

impl AnonymizeIp {
    /// Checks the counts.
    pub fn new(config: &AnonymizeIpConfig) -> Result<AnonymizeIp, EnrichmentsError> {
        if !(1..=4).contains(&config.octets) {
            return Err(EnrichmentsError::Config {
                table: "anonymize_ip",
                key: "octets",
                reason: format!("{} is out of range; write 1 to 4", config.octets),
            });
        }
        if !(1..=8).contains(&config.segments) {
            return Err(EnrichmentsError::Config {
                table: "anonymize_ip",
                key: "segments",
                reason: format!("{} is out of range; write 1 to 8", config.segments),
            });
        }
        Ok(AnonymizeIp {
            octets: usize::from(config.octets),
            segments: usize::from(config.segments),
        })
    }

    /// Masks `event.user_ipaddress` in place.
    pub fn apply(&self, event: &mut EnrichedEvent) {
        if let Some(address) = &event.user_ipaddress {
            if let Some(masked) = self.mask(address) {
                event.user_ipaddress = Some(Cow::Owned(masked));
            }
        }
    }

    /// The masked form of `address`, `None` when it is not an IP address.
    pub fn mask(&self, address: &str) -> Option<String> {
        match address.trim().parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => Some(self.mask_v4(v4)),
            IpAddr::V6(v6) => Some(match v6.to_ipv4_mapped() {
                Some(v4) => self.mask_v4(v4),
                None => self.mask_v6(v6),
            }),
        }
    }

    fn mask_v4(&self, address: Ipv4Addr) -> String {
        let keep = 4 - self.octets;
        let mut out = String::with_capacity(15);
        for (i, octet) in address.octets().iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            if i < keep {
                let _ = write!(out, "{octet}");
            } else {
                out.push('x');
            }
        }
        out
    }

    fn mask_v6(&self, address: Ipv6Addr) -> String {
        let keep = 8 - self.segments;
        let mut out = String::with_capacity(39);
        for (i, segment) in address.segments().iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            if i < keep {
                let _ = write!(out, "{segment:x}");
            } else {
                out.push('x');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymizer(octets: u8, segments: u8) -> AnonymizeIp {
        AnonymizeIp::new(&AnonymizeIpConfig {
            enabled: true,
            octets,
            segments,
        })
        .unwrap()
    }

    #[test]
    fn masks_ipv4_octets() {
        let cases = [
            (1, "203.0.113.42", "203.0.113.x"),
            (2, "203.0.113.42", "203.0.x.x"),
            (3, " 203.0.113.42", "203.x.x.x"),
            (4, "203.0.113.42", "x.x.x.x"),
        ];
        for (octets, input, expected) in cases {
            assert_eq!(anonymizer(octets, 2).mask(input).as_deref(), Some(expected));
        }
    }

    #[test]
    fn masks_ipv6_segments_in_full_form() {
        assert_eq!(
            anonymizer(1, 2).mask("2001:DB8::8a2e:370:7334").as_deref(),
            Some("2001:db8:0:0:0:8a2e:x:x")
        );
        assert_eq!(
            anonymizer(1, 8).mask("::1").as_deref(),
            Some("x:x:x:x:x:x:x:x")
        );
        assert_eq!(
            anonymizer(1, 1).mask("fe80::1").as_deref(),
            Some("fe80:0:0:0:0:0:0:x")
        );
        assert_eq!(
            anonymizer(2, 1).mask("::ffff:203.0.113.42").as_deref(),
            Some("203.0.x.x")
        );
    }

    #[test]
    fn leaves_non_addresses_alone() {
        let mut event = EnrichedEvent {
            user_ipaddress: Some("unknown".into()),
            ..EnrichedEvent::default()
        };
        anonymizer(1, 2).apply(&mut event);
        assert_eq!(event.user_ipaddress.as_deref(), Some("unknown"));
        event.user_ipaddress = Some("10.1.2.3".into());
        anonymizer(1, 2).apply(&mut event);
        assert_eq!(event.user_ipaddress.as_deref(), Some("10.1.2.x"));
    }

    #[test]
    fn refuses_out_of_range_counts() {
        for (octets, segments, key) in [
            (0, 2, "octets"),
            (5, 2, "octets"),
            (1, 0, "segments"),
            (1, 9, "segments"),
        ] {
            let error = AnonymizeIp::new(&AnonymizeIpConfig {
                enabled: true,
                octets,
                segments,
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.starts_with(&format!("[enrichments.anonymize_ip] {key}")),
                "{error}"
            );
        }
    }
}
