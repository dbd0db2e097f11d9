//! Writes a small GeoLite2-City-shaped MaxMind database from a list of places, so the geo
//! enrichment (and the dashboards' map) can be tried without MaxMind's data:
//!
//! ```sh
//! cargo run --release -p plowline-processor --example demo_geo_db -- \
//!     tests/tracker-client/geo-demo.json demo-city.mmdb
//! ```
//!
//! The input is `{"countries": [{"iso_code", "name", "city", "latitude", "longitude",
//! "ips": [...]}, ...]}`; each address resolves to its place. Then set
//! `[enrichments.geo] database = "demo-city.mmdb"` in the processor's config.

use anyhow::Context as _;
use plowline_processor::enrichments::geo::writer::{city_database, Place};

#[derive(serde::Deserialize)]
struct Places {
    countries: Vec<Place>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        anyhow::bail!("usage: demo_geo_db PLACES.json OUTPUT.mmdb");
    };
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {input}"))?;
    let places: Places =
        serde_json::from_str(&text).with_context(|| format!("{input} is not a list of places"))?;
    std::fs::write(output, city_database(&places.countries))
        .with_context(|| format!("cannot write {output}"))?;
    let addresses: usize = places.countries.iter().map(|p| p.ips.len()).sum();
    eprintln!(
        "{output}: {} places, {addresses} addresses",
        places.countries.len()
    );
    Ok(())
}
