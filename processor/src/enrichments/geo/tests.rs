//! Tests against small MaxMind DB files written by [`super::writer`].

use std::path::PathBuf;

use super::writer::{database as mmdb, Value as V};
use super::*;

fn names(english: &'static str) -> V<'static> {
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

fn lookup(geo: &Geo, address: &str) -> (EnrichedEvent<'static>, Vec<String>) {
    let mut event = EnrichedEvent {
        user_ipaddress: Some(address.to_owned().into()),
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

#[test]
fn the_demo_places_resolve_to_their_city() {
    let json = include_str!("../../../../tests/tracker-client/geo-demo.json");
    let demo: serde_json::Value = serde_json::from_str(json).unwrap();
    let places: Vec<writer::Place> = serde_json::from_value(demo["countries"].clone()).unwrap();
    assert!(places.len() >= 5);
    let geo = geo("demo", Some(writer::city_database(&places)), None)
        .unwrap()
        .unwrap();
    for place in &places {
        for ip in &place.ips {
            let (event, failures) = lookup(&geo, &ip.to_string());
            assert!(failures.is_empty(), "{failures:?}");
            assert_eq!(
                event.geo_country.as_deref(),
                Some(place.iso_code.as_str()),
                "{ip}"
            );
            assert_eq!(event.geo_city.as_deref(), Some(place.city.as_str()), "{ip}");
            assert_eq!(event.geo_latitude, Some(place.latitude));
        }
    }
}
