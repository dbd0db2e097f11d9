//! A small MaxMind DB writer, from the format's public specification: a binary search tree over
//! the address bits (24-bit records), 16 zero bytes, a data section of typed values, then
//! `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//!
//! It writes the databases the tests and the quickstart use ([`city_database`] turns a list of
//! places into a GeoLite2-City-shaped file), so the geo enrichment runs against real `.mmdb`
//! files without shipping MaxMind's data.

use std::net::IpAddr;

use serde::Deserialize;

/// A value of the MaxMind DB data section.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// UTF-8 string.
    Str(&'a str),
    /// Double.
    F64(f64),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Map with string keys.
    Map(Vec<(&'a str, Value<'a>)>),
    /// Array.
    Array(Vec<Value<'a>>),
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

fn encode(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Str(text) => {
            control(out, 2, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::F64(number) => {
            control(out, 3, 8);
            out.extend_from_slice(&number.to_be_bytes());
        }
        Value::U16(number) => uint(out, 5, u64::from(*number)),
        Value::U32(number) => uint(out, 6, u64::from(*number)),
        Value::U64(number) => uint(out, 9, *number),
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (key, value) in pairs {
                encode(out, &Value::Str(key));
                encode(out, value);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for item in items {
                encode(out, item);
            }
        }
    }
}

/// An IPv6 database (IPv4 under `::/96`), 24-bit records, mapping each network (address,
/// prefix length) to its record.
pub fn database(database_type: &str, networks: &[(IpAddr, usize, Value<'_>)]) -> Vec<u8> {
    // The tree: node i has two children; leaves point into the data section.
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
    let metadata = Value::Map(vec![
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(1_700_000_000)),
        ("database_type", Value::Str(database_type)),
        (
            "description",
            Value::Map(vec![("en", Value::Str("plowline test database"))]),
        ),
        ("ip_version", Value::U16(6)),
        ("languages", Value::Array(vec![Value::Str("en")])),
        ("node_count", Value::U32(node_count as u32)),
        ("record_size", Value::U16(24)),
    ]);
    encode(&mut out, &metadata);
    out
}

/// A place and the addresses that resolve to it, as `tests/tracker-client/geo-demo.json` lists
/// them (`{"countries": [Place, ...]}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Place {
    /// ISO 3166-1 alpha-2 country code.
    pub iso_code: String,
    /// Country name (English).
    pub name: String,
    /// City name (English).
    pub city: String,
    /// Latitude of the city.
    pub latitude: f64,
    /// Longitude of the city.
    pub longitude: f64,
    /// Addresses (each a /32 or /128 network) located here.
    pub ips: Vec<IpAddr>,
}

/// A GeoLite2-City-shaped database in which each place's addresses resolve to its country, city
/// and coordinates.
pub fn city_database(places: &[Place]) -> Vec<u8> {
    let mut networks = Vec::new();
    for place in places {
        let names = |english| Value::Map(vec![("en", Value::Str(english))]);
        let record = Value::Map(vec![
            ("city", Value::Map(vec![("names", names(&place.city))])),
            (
                "country",
                Value::Map(vec![
                    ("iso_code", Value::Str(&place.iso_code)),
                    ("names", names(&place.name)),
                ]),
            ),
            (
                "location",
                Value::Map(vec![
                    ("latitude", Value::F64(place.latitude)),
                    ("longitude", Value::F64(place.longitude)),
                ]),
            ),
        ]);
        for ip in &place.ips {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            networks.push((*ip, prefix, record.clone()));
        }
    }
    database("GeoLite2-City", &networks)
}
