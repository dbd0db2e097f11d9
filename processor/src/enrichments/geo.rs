//! Geo and ISP lookups of `user_ipaddress` in MaxMind databases (`.mmdb`), read once at start.
//!
//! From a City database (GeoLite2-City, GeoIP2-City): `geo_country` (ISO 3166-1 alpha-2),
//! `geo_region` (the first subdivision's ISO code), `geo_region_name` (its English name),
//! `geo_city` (English name), `geo_zipcode`, `geo_latitude`, `geo_longitude`, `geo_timezone`.
//! From an ASN or ISP database (GeoLite2-ASN, GeoIP2-ISP): `ip_isp` (the ISP, else the
//! autonomous system's organization) and `ip_organization` (the organization, else the
//! autonomous system's organization).
//!
//! An address that is not in a database, or not an IP address, leaves the fields alone; an IPv6
//! address is not looked up in an IPv4-only database; an IPv4-mapped IPv6 address is looked up
//! as IPv4. A record that cannot be decoded is an enrichment failure. Runs before
//! `anonymize_ip`, which needs it to see the real address.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{geoip2, Reader};
use serde::Deserialize;

use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// `[enrichments.geo]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Look the client address up. Default `true`, but nothing happens without a database.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A MaxMind City database (`GeoLite2-City.mmdb`, `GeoIP2-City.mmdb`).
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// A MaxMind ASN or ISP database (`GeoLite2-ASN.mmdb`, `GeoIP2-ISP.mmdb`).
    #[serde(default)]
    pub asn_database: Option<PathBuf>,
}

fn default_enabled() -> bool {
    true
}

impl Default for GeoConfig {
    fn default() -> Self {
        GeoConfig {
            enabled: default_enabled(),
            database: None,
            asn_database: None,
        }
    }
}

/// One database and where it came from.
struct Database {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata.database_type)
            .finish_non_exhaustive()
    }
}

impl Database {
    fn open(path: &Path, key: &'static str) -> Result<Database, EnrichmentsError> {
        let what = if key == "database" {
            "geo database ([enrichments.geo] database)"
        } else {
            "ASN/ISP database ([enrichments.geo] asn_database)"
        };
        let bytes = std::fs::read(path).map_err(|source| EnrichmentsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| EnrichmentsError::Invalid {
            what,
            path: path.to_owned(),
            reason,
        };
        let length = bytes.len();
        let reader = Reader::from_source(bytes)
            .map_err(|error| invalid(format!("{error}; expected a MaxMind DB (.mmdb) file")))?;
        let metadata = &reader.metadata;
        // The reader trusts the metadata when it walks the tree: check that the tree fits.
        let tree_bytes = u64::from(metadata.node_count) * u64::from(metadata.record_size) / 4;
        if !matches!(metadata.record_size, 24 | 28 | 32)
            || !matches!(metadata.ip_version, 4 | 6)
            || tree_bytes + 16 > length as u64
        {
            return Err(invalid(format!(
                "its metadata (record_size {}, node_count {}, ip_version {}) does not fit a \
                 {length}-byte file; the file is truncated or not a MaxMind DB",
                metadata.record_size, metadata.node_count, metadata.ip_version
            )));
        }
        Ok(Database {
            reader,
            path: path.to_owned(),
        })
    }

    /// The address to look up in this database, if it can hold it.
    fn address(&self, address: IpAddr) -> Option<IpAddr> {
        match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Some(IpAddr::V4(v4)),
                None => (self.reader.metadata.ip_version == 6).then_some(address),
            },
            v4 => Some(v4),
        }
    }
}

/// The geo enrichment, its databases loaded.
#[derive(Debug)]
pub struct Geo {
    city: Option<Database>,
    isp: Option<Database>,
}

impl Geo {
    /// Reads the configured databases; `None` when none is configured.
    pub fn new(config: &GeoConfig) -> Result<Option<Geo>, EnrichmentsError> {
        let city = config
            .database
            .as_deref()
            .map(|path| Database::open(path, "database"))
            .transpose()?;
        let isp = config
            .asn_database
            .as_deref()
            .map(|path| Database::open(path, "asn_database"))
            .transpose()?;
        Ok((city.is_some() || isp.is_some()).then_some(Geo { city, isp }))
    }

    /// Fills the geo and ISP fields from `event.user_ipaddress`; pushes a message to `failures`
    /// for a record that cannot be decoded.
    pub fn apply(&self, event: &mut EnrichedEvent, failures: &mut Vec<String>) {
        let Some(address) = event
            .user_ipaddress
            .as_deref()
            .and_then(|text| text.trim().parse::<IpAddr>().ok())
        else {
            return;
        };
        if let Some(db) = &self.city {
            if let Some(ip) = db.address(address) {
                match db.reader.lookup::<geoip2::City<'_>>(ip) {
                    Ok(Some(city)) => fill_city(event, &city),
                    Ok(None) => {}
                    Err(error) => failures.push(lookup_failure(db, ip, &error)),
                }
            }
        }
        if let Some(db) = &self.isp {
            if let Some(ip) = db.address(address) {
                match db.reader.lookup::<geoip2::Isp<'_>>(ip) {
                    Ok(Some(isp)) => {
                        let asn_org = isp.autonomous_system_organization;
                        if let Some(name) = isp.isp.or(asn_org) {
                            event.ip_isp = Some(Cow::Owned(name.to_owned()));
                        }
                        if let Some(name) = isp.organization.or(asn_org) {
                            event.ip_organization = Some(Cow::Owned(name.to_owned()));
                        }
                    }
                    Ok(None) => {}
                    Err(error) => failures.push(lookup_failure(db, ip, &error)),
                }
            }
        }
    }
}

fn fill_city(event: &mut EnrichedEvent, city: &geoip2::City<'_>) {
    let english = |names: &Option<std::collections::BTreeMap<&str, &str>>| {
        names
            .as_ref()
            .and_then(|names| names.get("en"))
            .map(|name| Cow::Owned((*name).to_owned()))
    };
    if let Some(code) = city.country.as_ref().and_then(|c| c.iso_code) {
        event.geo_country = Some(Cow::Owned(code.to_owned()));
    }
    if let Some(region) = city.subdivisions.as_ref().and_then(|s| s.first()) {
        event.geo_region = region.iso_code.map(|code| Cow::Owned(code.to_owned()));
        event.geo_region_name = english(&region.names);
    }
    if let Some(name) = city.city.as_ref().and_then(|c| english(&c.names)) {
        event.geo_city = Some(name);
    }
    if let Some(code) = city.postal.as_ref().and_then(|p| p.code) {
        event.geo_zipcode = Some(Cow::Owned(code.to_owned()));
    }
    if let Some(location) = &city.location {
        event.geo_latitude = location.latitude;
        event.geo_longitude = location.longitude;
        event.geo_timezone = location.time_zone.map(|tz| Cow::Owned(tz.to_owned()));
    }
}

fn lookup_failure(db: &Database, ip: IpAddr, error: &maxminddb::MaxMindDbError) -> String {
    format!(
        "geo: cannot read the record of {ip} in {}: {error}",
        db.path.display()
    )
}

#[cfg(test)]
mod tests;
pub mod writer;
