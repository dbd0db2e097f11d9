//! Tests against small MaxMind DB files written here, from the format's public specification:
//! a binary search tree over the address bits (24-bit records), 16 zero bytes, a data section of
//! typed values, then `\xAB\xCD\xEFMaxMind.com` and the metadata map.

use std::path::PathBuf;

use super::*;

/// A value of the MaxMind DB data section.
enum V {
    Str(&'static str),
    F64(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'static str, V)>),
    Array(Vec<V>),
}

/// The control byte(s) of a value: its type and its size.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (size_bits, extra): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        _ => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
    };
    if kind <= 7 {
        out.push(kind << 5 | size_bits);
    } else {
        out.push(size_bits);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, value: &V) {
    match value {
        V::Str(text) => {
            control(out, 2, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        V::F64(number) => {
            control(out, 3, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        V::U16(number) => uint(out, 5, u64::from(*number)),
        V::U32(number) => uint(out, 6, u64::from(*number)),
        V::U64(number) => uint(out, 9, *number),
        V::Map(pairs) => {
            control(out, 7, pairs.len());
            for (key, value) in pairs {
                encode(out, &V::Str(key));
                encode(out, value);
            }
        }
        V::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

/// An IPv6 database (IPv4 under `::/96`), 24-bit records, mapping each network to its record.
fn mmdb(database_type: &'static str, networks: &[(IpAddr, usize, V)]) -> Vec<u8> {
    // The tree: node i has two children; `None` is "no data"; leaves point into the data.
    #[derive(Clone, Copy)]
    enum Slot {
        Empty,
        Node(usize),
        Data(usize),
    }
    let mut nodes: Vec<[Slot; 2]> = vec![[Slot::Empty; 2]];
    let mut data = Vec::new();
    for (address, prefix, record) in networks {
        let (bits, prefix) = match address {
            IpAddr::V4(v4) => (u128::from(u32::from(*v4)), 96 + prefix),
            IpAddr::V6(v6) => (u128::from(*v6), *prefix),
        };
        let offset = data.len();
        encode(&mut data, record);
        let mut node = 0;
        for depth in 0..prefix {
            let bit = usize::from(bits >> (127 - depth) & 1 == 1);
            if depth + 1 == prefix {
                nodes[node][bit] = Slot::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Slot::Node(next) => next,
                    _ => {
                        nodes.push([Slot::Empty; 2]);
                        nodes[node][bit] = Slot::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }
    }
    let node_count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for slot in node {
            let value = match *slot {
                Slot::Empty => node_count,
                Slot::Node(next) => next,
                Slot::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let metadata = V::Map(vec![
        ("binary_format_major_version", V::U16(2)),
        ("binary_format_minor_version", V::U16(0)),
        ("build_epoch", V::U64(1_700_000_000)),
        ("database_type", V::Str(database_type)),
        (
            "description",
            V::Map(vec![("en", V::Str("plowline test database"))]),
        ),
        ("ip_version", V::U16(6)),
        ("languages", V::Array(vec![V::Str("en")])),
        ("node_count", V::U32(node_count as u32)),
        ("record_size", V::U16(24)),
    ]);
    encode(&mut out, &metadata);
    out
}

fn names(english: &'static str) -> V {
    V::Map(vec![("en", V::Str(english)), ("de", V::Str("x"))])
}

fn city_db() -> Vec<u8> {
    mmdb(
        "GeoLite2-City",
        &[
            (
                "203.0.113.0".parse().unwrap(),
                24,
                V::Map(vec![
                    (
                        "city",
                        V::Map(vec![
                            ("geoname_id", V::U32(2988507)),
                            ("names", names("Paris")),
                        ]),
                    ),
                    (
                        "country",
                        V::Map(vec![("iso_code", V::Str("FR")), ("names", names("France"))]),
                    ),
                    (
                        "location",
                        V::Map(vec![
                            ("latitude", V::F64(48.8566)),
                            ("longitude", V::F64(2.3522)),
                            ("time_zone", V::Str("Europe/Paris")),
                        ]),
                    ),
                    ("postal", V::Map(vec![("code", V::Str("75001"))])),
                    (
                        "subdivisions",
                        V::Array(vec![V::Map(vec![
                            ("iso_code", V::Str("IDF")),
                            ("names", names("Île-de-France")),
                        ])]),
                    ),
                ]),
            ),
            (
                "2001:db8::".parse().unwrap(),
                32,
                V::Map(vec![("country", V::Map(vec![("iso_code", V::Str("DE"))]))]),
            ),
        ],
    )
}

fn asn_db() -> Vec<u8> {
    mmdb(
        "GeoLite2-ASN",
        &[(
            "203.0.113.0".parse().unwrap(),
            25,
            V::Map(vec![
                ("autonomous_system_number", V::U32(64500)),
                ("autonomous_system_organization", V::Str("Example Transit")),
            ]),
        )],
    )
}

/// Writes the databases to a fresh directory and loads them.
fn geo(
    name: &str,
    city: Option<Vec<u8>>,
    asn: Option<Vec<u8>>,
) -> Result<Option<Geo>, EnrichmentsError> {
    let dir = std::env::temp_dir().join(format!("plowline-geo-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, bytes: Option<Vec<u8>>| -> Option<PathBuf> {
        let bytes = bytes?;
        let path = dir.join(file);
        std::fs::write(&path, bytes).unwrap();
        Some(path)
    };
    let config = GeoConfig {
        enabled: true,
        database: write("city.mmdb", city),
        asn_database: write("asn.mmdb", asn),
    };
    let geo = Geo::new(&config);
    std::fs::remove_dir_all(&dir).unwrap();
    geo
}

fn lookup(geo: &Geo, address: &str) -> (EnrichedEvent, Vec<String>) {
    let mut event = EnrichedEvent {
        user_ipaddress: Some(address.to_owned()),
        ..EnrichedEvent::default()
    };
    let mut failures = Vec::new();
    geo.apply(&mut event, &mut failures);
    (event, failures)
}

#[test]
fn city_and_asn_fields() {
    let geo = geo("both", Some(city_db()), Some(asn_db()))
        .unwrap()
        .unwrap();
    let (event, failures) = lookup(&geo, "203.0.113.42");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(event.geo_country.as_deref(), Some("FR"));
    assert_eq!(event.geo_region.as_deref(), Some("IDF"));
    assert_eq!(event.geo_region_name.as_deref(), Some("Île-de-France"));
    assert_eq!(event.geo_city.as_deref(), Some("Paris"));
    assert_eq!(event.geo_zipcode.as_deref(), Some("75001"));
    assert_eq!(event.geo_latitude, Some(48.8566));
    assert_eq!(event.geo_longitude, Some(2.3522));
    assert_eq!(event.geo_timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(event.ip_isp.as_deref(), Some("Example Transit"));
    assert_eq!(event.ip_organization.as_deref(), Some("Example Transit"));
    // The ASN network is a /25: the upper half of the /24 has a city but no ASN.
    let (event, _) = lookup(&geo, "203.0.113.200");
    assert_eq!(event.geo_city.as_deref(), Some("Paris"));
    assert_eq!(event.ip_isp, None);
    // IPv4-mapped IPv6 is looked up as IPv4.
    let (event, _) = lookup(&geo, "::ffff:203.0.113.1");
    assert_eq!(event.geo_country.as_deref(), Some("FR"));
}

#[test]
fn ipv6_unknown_and_invalid_addresses() {
    let geo = geo("v6", Some(city_db()), None).unwrap().unwrap();
    let (event, failures) = lookup(&geo, "2001:db8::1");
    assert!(failures.is_empty());
    assert_eq!(event.geo_country.as_deref(), Some("DE"));
    assert_eq!(event.geo_city, None);
    for address in ["198.51.100.7", "2001:db9::1", "not an ip", ""] {
        let (event, failures) = lookup(&geo, address);
        assert!(failures.is_empty(), "{address}");
        assert_eq!(event.geo_country, None, "{address}");
    }
    let mut event = EnrichedEvent::default();
    let mut failures = Vec::new();
    geo.apply(&mut event, &mut failures);
    assert_eq!(event, EnrichedEvent::default());
}

#[test]
fn no_database_no_enrichment() {
    assert!(geo("none", None, None).unwrap().is_none());
}

#[test]
fn bad_files_are_refused_with_their_path() {
    let error = geo("garbage", Some(b"not a database".to_vec()), None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("city.mmdb") && error.contains("MaxMind"),
        "{error}"
    );
    // A real header whose tree does not fit in the file.
    let mut truncated = city_db();
    let tail = truncated.split_off(6);
    let metadata_at = tail
        .windows(14)
        .position(|w| w == b"\xab\xcd\xefMaxMind.com")
        .unwrap();
    truncated.extend_from_slice(&tail[metadata_at..]);
    let error = geo("truncated", Some(truncated), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("city.mmdb"), "{error}");
    let error = Geo::new(&GeoConfig {
        enabled: true,
        database: Some("/nonexistent/GeoLite2-City.mmdb".into()),
        asn_database: None,
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("/nonexistent/GeoLite2-City.mmdb"), "{error}");
}

#[test]
fn geo_runs_before_anonymization() {
    use crate::enrichments::{AnonymizeIpConfig, Enrichments, EnrichmentsConfig};
    use plowline_collector::tracker::Params;

    let dir = std::env::temp_dir().join(format!("plowline-geo-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("GeoLite2-City.mmdb");
    std::fs::write(&path, city_db()).unwrap();
    let config = EnrichmentsConfig {
        geo: GeoConfig {
            database: Some(path),
            ..GeoConfig::default()
        },
        anonymize_ip: AnonymizeIpConfig {
            enabled: true,
            ..AnonymizeIpConfig::default()
        },
        ..EnrichmentsConfig::default()
    };
    let enrichments = Enrichments::new(&config);
    std::fs::remove_dir_all(&dir).unwrap();
    let mut event = EnrichedEvent {
        user_ipaddress: Some("203.0.113.42".into()),
        ..EnrichedEvent::default()
    };
    let failures = enrichments.unwrap().apply(&mut event, &Params::new());
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(event.geo_city.as_deref(), Some("Paris"));
    assert_eq!(event.user_ipaddress.as_deref(), Some("203.0.113.x"));
}
