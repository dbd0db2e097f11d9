//! The production examples in `deploy/` stay usable: every config file the compose file mounts
//! exists and is accepted by the program that reads it, and the nginx config is what
//! `plow-collector nginx-conf` renders for it.

use std::path::{Path, PathBuf};

use plowline_collector::nginx::EndpointConfig;
use plowline_processor::config::Config as ProcessorConfig;
use plowline_processor::sinks::config::{LoaderConfig, SinkKind};
use plowline_shipper::config::Config as ShipperConfig;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

#[test]
fn every_mounted_config_exists() {
    let compose = std::fs::read_to_string(deploy("compose.yaml")).unwrap();
    let mounted: Vec<&str> = compose
        .match_indices("./config/")
        .map(|(at, _)| {
            let rest = &compose[at + 2..];
            &rest[..rest.find(':').unwrap()]
        })
        .collect();
    assert!(mounted.len() >= 5, "{mounted:?}");
    for file in mounted {
        assert!(
            deploy(file).is_file(),
            "compose.yaml mounts a missing {file}"
        );
    }
    let dashboards =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/kibana/plowline.ndjson");
    assert!(compose.contains("../dashboards/kibana/plowline.ndjson") && dashboards.is_file());
}

#[test]
fn the_shipper_config_is_valid() {
    let config = ShipperConfig::from_file(&deploy("config/shipper.toml")).unwrap();
    config.validate().unwrap();
}

#[test]
fn the_processor_config_is_valid() {
    let config = ProcessorConfig::load(&deploy("config/processor.toml")).unwrap();
    config.validate().unwrap();
}

#[test]
fn the_loader_configs_are_valid() {
    for (file, sink) in [
        ("config/loader-clickhouse.toml", SinkKind::ClickHouse),
        ("config/loader-elasticsearch.toml", SinkKind::Elasticsearch),
    ] {
        let config = LoaderConfig::load(&deploy(file)).unwrap();
        config
            .validate(sink)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn the_nginx_config_is_rendered_by_plow_collector() {
    let rendered = EndpointConfig {
        listen: "8080".into(),
        access_log: "/var/log/plowline/tracker.log".into(),
        ..EndpointConfig::default()
    }
    .render_http_snippet();
    let committed = std::fs::read_to_string(deploy("config/nginx.conf")).unwrap();
    assert!(
        committed == rendered,
        "deploy/config/nginx.conf is stale: plow-collector nginx-conf --listen 8080 \
         --access-log /var/log/plowline/tracker.log > deploy/config/nginx.conf"
    );
}
