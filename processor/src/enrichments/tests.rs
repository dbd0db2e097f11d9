//! The enrichments together: configuration, order, and robustness.

use plowline_collector::tracker::Param;

use super::*;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";

fn parse(text: &str) -> Result<EnrichmentsConfig, toml::de::Error> {
    let mut table: toml::Table = toml::from_str(text)?;
    let enrichments = table
        .remove("enrichments")
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    enrichments.try_into()
}

#[test]
fn absent_tables_mean_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, EnrichmentsConfig::default());
    assert!(config.user_agent.enabled && config.referer.enabled && config.campaign.enabled);
    assert!(config.fingerprint.enabled && config.bot.enabled && config.geo.enabled);
    assert!(!config.anonymize_ip.enabled && !config.pseudonymize.enabled);
}

#[test]
fn the_documented_keys_parse() {
    let config = parse(
        r#"
[enrichments.user_agent]
regexes = "path/to/regexes.yaml"
cache_size = 500
[enrichments.referer]
database = "path/to/referers.yml"
internal_domains = ["shop.example.com"]
[enrichments.campaign]
enabled = true
source = ["utm_source", "src"]
click_ids = { gclid = "Google", fbclid = "Facebook" }
[enrichments.geo]
database = "path/to/GeoLite2-City.mmdb"
asn_database = "path/to/GeoLite2-ASN.mmdb"
[enrichments.anonymize_ip]
octets = 1
segments = 3
[enrichments.pseudonymize]
salt = "a-long-enough-secret-salt"
fields = ["user_id"]
[enrichments.fingerprint]
window = 1000
[enrichments.bot]
enabled = false
extra_patterns = ["acme-monitor"]
"#,
    )
    .unwrap();
    assert_eq!(
        config.user_agent.regexes,
        Some("path/to/regexes.yaml".into())
    );
    assert_eq!(config.user_agent.cache_size, 500);
    assert_eq!(config.referer.database, Some("path/to/referers.yml".into()));
    assert_eq!(config.referer.internal_domains, ["shop.example.com"]);
    assert_eq!(config.campaign.source, ["utm_source", "src"]);
    assert_eq!(config.campaign.click_ids["fbclid"], "Facebook");
    assert_eq!(config.campaign.medium, ["utm_medium"]);
    assert_eq!(
        config.geo.database,
        Some("path/to/GeoLite2-City.mmdb".into())
    );
    assert!(config.anonymize_ip.enabled, "writing the table turns it on");
    assert_eq!(
        (config.anonymize_ip.octets, config.anonymize_ip.segments),
        (1, 3)
    );
    assert!(config.pseudonymize.enabled);
    assert_eq!(config.pseudonymize.fields, ["user_id"]);
    assert_eq!(config.fingerprint.window, 1000);
    assert!(!config.bot.enabled);
}

#[test]
fn unknown_keys_are_refused() {
    for text in [
        "[enrichments.user_agent]\nregex = \"x\"",
        "[enrichments.referer]\ninternal_domain = []",
        "[enrichments.anonymise_ip]\noctets = 1",
        "[enrichments.anonymize_ip]\noctets = -1",
    ] {
        assert!(parse(text).is_err(), "{text}");
    }
}

#[test]
fn the_shipped_example_config_parses() {
    let example: toml::Table =
        toml::from_str(include_str!("../../examples/processor.toml")).unwrap();
    if let Some(enrichments) = example.get("enrichments") {
        let _: EnrichmentsConfig = enrichments.clone().try_into().unwrap();
    }
}

#[test]
fn invalid_values_fail_at_new() {
    let mut config = EnrichmentsConfig {
        anonymize_ip: AnonymizeIpConfig {
            enabled: true,
            octets: 7,
            segments: 2,
        },
        ..EnrichmentsConfig::default()
    };
    let error = Enrichments::new(&config).unwrap_err().to_string();
    assert!(
        error.contains("[enrichments.anonymize_ip] octets"),
        "{error}"
    );
    // The same value is not checked when the enrichment is off.
    config.anonymize_ip.enabled = false;
    Enrichments::new(&config).unwrap();
    config.pseudonymize.enabled = true;
    let error = Enrichments::new(&config).unwrap_err().to_string();
    assert!(error.contains("[enrichments.pseudonymize] salt"), "{error}");
}

fn hit() -> (EnrichedEvent<'static>, Params<'static>) {
    let params: Params<'static> = [
        ("e", "pv"),
        ("eid", "c6ef3124-b53a-4b13-a233-0088f79dcbcb"),
        (
            "url",
            "https://shop.example.com/p?utm_source=news&gclid=abc",
        ),
        ("refr", "https://www.google.de/search?q=boots"),
        ("ua", CHROME),
        ("uid", "alice"),
    ]
    .into_iter()
    .map(|(k, v)| Param::new(k, v))
    .collect();
    let event = EnrichedEvent {
        event_id: Some("c6ef3124-b53a-4b13-a233-0088f79dcbcb".into()),
        page_url: Some("https://shop.example.com/p?utm_source=news&gclid=abc".into()),
        page_referrer: Some("https://www.google.de/search?q=boots".into()),
        useragent: Some(CHROME.into()),
        user_id: Some("alice".into()),
        user_ipaddress: Some("203.0.113.42".into()),
        ..EnrichedEvent::default()
    };
    (event, params)
}

#[test]
fn defaults_enrich_a_page_view() {
    let enrichments = Enrichments::new(&EnrichmentsConfig::default()).unwrap();
    let (mut event, params) = hit();
    assert_eq!(enrichments.apply(&mut event, &params), Vec::<String>::new());
    assert_eq!(event.br_family.as_deref(), Some("Chrome"));
    assert_eq!(event.refr_medium.as_deref(), Some("search"));
    assert_eq!(event.refr_source.as_deref(), Some("Google"));
    assert_eq!(event.refr_term.as_deref(), Some("boots"));
    assert_eq!(event.mkt_source.as_deref(), Some("news"));
    assert_eq!(event.mkt_network.as_deref(), Some("Google"));
    assert_eq!(event.event_fingerprint.as_deref().map(str::len), Some(64));
    assert_eq!(event.user_ipaddress.as_deref(), Some("203.0.113.42"));
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    let schemas: Vec<String> = event
        .derived_contexts
        .iter()
        .map(|c| c.schema.to_string())
        .collect();
    assert_eq!(
        schemas,
        [
            user_agent::UA_PARSER_CONTEXT_SCHEMA,
            bot::SPIDERS_AND_ROBOTS_SCHEMA
        ]
    );
}

#[test]
fn anonymize_then_pseudonymize_last() {
    let config = EnrichmentsConfig {
        anonymize_ip: AnonymizeIpConfig {
            enabled: true,
            ..AnonymizeIpConfig::default()
        },
        pseudonymize: PseudonymizeConfig {
            enabled: true,
            salt: "a-long-enough-secret-salt".into(),
            fields: vec!["user_id".into(), "user_ipaddress".into()],
        },
        ..EnrichmentsConfig::default()
    };
    let enrichments = Enrichments::new(&config).unwrap();
    let hasher = Pseudonymize::new(&config.pseudonymize).unwrap();
    let (mut event, params) = hit();
    let plain_fingerprint = {
        let (mut plain, _) = hit();
        Enrichments::new(&EnrichmentsConfig::default())
            .unwrap()
            .apply(&mut plain, &params);
        plain.event_fingerprint
    };
    enrichments.apply(&mut event, &params);
    assert_eq!(
        event.user_ipaddress,
        Some(hasher.digest("203.0.113.x").into())
    );
    assert_eq!(event.user_id, Some(hasher.digest("alice").into()));
    // The fingerprint is over the raw parameters, whatever the later steps do.
    assert_eq!(event.event_fingerprint, plain_fingerprint);
}

#[test]
fn everything_off_changes_nothing() {
    let config = parse(
        "[enrichments.user_agent]\nenabled = false\n[enrichments.referer]\nenabled = false\n\
         [enrichments.campaign]\nenabled = false\n[enrichments.fingerprint]\nenabled = false\n\
         [enrichments.bot]\nenabled = false\n[enrichments.geo]\nenabled = false\n\
         database = \"/nonexistent.mmdb\"",
    )
    .unwrap();
    let enrichments = Enrichments::new(&config).unwrap();
    let (mut event, params) = hit();
    let before = event.clone();
    assert!(enrichments.apply(&mut event, &params).is_empty());
    assert_eq!(event, before);
}

#[test]
fn odd_events_never_panic() {
    let config = EnrichmentsConfig {
        anonymize_ip: AnonymizeIpConfig {
            enabled: true,
            ..AnonymizeIpConfig::default()
        },
        ..EnrichmentsConfig::default()
    };
    let enrichments = Enrichments::new(&config).unwrap();
    let odd = [
        "",
        " ",
        "%",
        "%zz",
        "http://",
        "http://[::1",
        "https://@/?#",
        "\u{0}\t\n",
        "é中😀",
        "http://a.com/?utm_source=%E9%FF&gclid",
        "::",
        "999.1.1.1",
        "1.2.3.4.5",
    ];
    for text in odd {
        let mut event = EnrichedEvent {
            page_url: Some(text.into()),
            page_referrer: Some(text.into()),
            useragent: Some(text.into()),
            user_ipaddress: Some(text.into()),
            ..EnrichedEvent::default()
        };
        let params: Params<'_> = [Param::new(text, text)].into_iter().collect();
        enrichments.apply(&mut event, &params);
    }
    let mut empty = EnrichedEvent::default();
    assert!(enrichments.apply(&mut empty, &Params::new()).is_empty());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Text that looks like the fields' input more often than uniform noise would.
    fn texty() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(https?|ftp)://[a-zA-Z0-9.:@\\[\\]-]{0,30}(/[a-z%0-9/]{0,20})?(\\?[a-z_=&%+0-9]{0,40})?(#.{0,5})?",
            "[0-9a-fA-F:.x]{0,40}",
            "Mozilla/5\\.0 \\([ -~]{0,60}\\)[ -~]{0,60}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn apply_never_panics(
            url in texty(),
            refr in texty(),
            ua in texty(),
            ip in texty(),
            params in proptest::collection::vec((any::<String>(), any::<String>()), 0..8),
        ) {
            let config = EnrichmentsConfig {
                anonymize_ip: AnonymizeIpConfig { enabled: true, ..AnonymizeIpConfig::default() },
                pseudonymize: PseudonymizeConfig {
                    enabled: true,
                    salt: "a-long-enough-secret-salt".into(),
                    ..PseudonymizeConfig::default()
                },
                ..EnrichmentsConfig::default()
            };
            let enrichments = enrichments_for(&config);
            let mut event = EnrichedEvent {
                page_url: Some(url.into()),
                page_referrer: Some(refr.into()),
                useragent: Some(ua.into()),
                user_ipaddress: Some(ip.into()),
                ..EnrichedEvent::default()
            };
            let params: Params<'_> = params
                .iter()
                .map(|(k, v)| Param::new(k.as_str(), v.as_str()))
                .collect();
            let failures = enrichments.apply(&mut event, &params);
            prop_assert!(failures.is_empty());
            prop_assert_eq!(event.event_fingerprint.map(|f| f.len()), Some(64));
        }
    }

    /// One `Enrichments` for all cases: compiling the uap-core rules is the slow part.
    fn enrichments_for(config: &EnrichmentsConfig) -> &'static Enrichments {
        static SHARED: std::sync::OnceLock<Enrichments> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Enrichments::new(config).unwrap())
    }
}

#[test]
fn enrichments_are_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Enrichments>();
    let enrichments = Enrichments::new(&EnrichmentsConfig::default()).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let (mut event, params) = hit();
                assert!(enrichments.apply(&mut event, &params).is_empty());
                assert_eq!(event.br_family.as_deref(), Some("Chrome"));
            });
        }
    });
}

#[test]
fn the_bot_verdict_cached_with_the_user_agent_is_the_same_every_time() {
    let enrichments = Enrichments::new(&EnrichmentsConfig::default()).unwrap();
    let verdict = |user_agent: &str| {
        let mut event = EnrichedEvent {
            useragent: Some(user_agent.into()),
            ..EnrichedEvent::default()
        };
        enrichments.apply(&mut event, &Params::new());
        let context = event
            .derived_contexts
            .iter()
            .find(|c| c.schema.name == "spiders_and_robots")
            .expect("a bot context");
        context.data.to_value()["spiderOrRobot"].clone()
    };
    // A spider by uap-core, a robot by the patterns only, a browser: twice each, the second
    // time from the user-agent cache.
    let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    for _ in 0..2 {
        assert_eq!(verdict(googlebot), true);
        assert_eq!(verdict("python-requests/2.31.0"), true);
        assert_eq!(verdict(CHROME), false);
    }
}
