use std::sync::OnceLock;

use serde_json::json;

use super::*;

const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1";
const FIREFOX_MAC: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";

/// The built-in rules, compiled once for all tests.
fn built_in() -> &'static UserAgent {
    static PARSER: OnceLock<UserAgent> = OnceLock::new();
    PARSER.get_or_init(|| UserAgent::new(&UserAgentConfig::default()).unwrap())
}

#[test]
fn built_in_rules_compile() {
    let parser = built_in();
    assert!(parser.rules() > 1000, "{} rules", parser.rules());
    // Every pattern of the vendored uap-core 0.18.0 compiles with the regex crate.
    assert_eq!(parser.skipped_rules(), 0);
}

#[test]
fn chrome_on_windows() {
    let info = built_in().parse(CHROME_WINDOWS);
    assert_eq!(info.user_agent.family, "Chrome");
    assert_eq!(info.br_version.as_deref(), Some("120.0.6099"));
    assert_eq!(info.br_name, "Chrome 120");
    assert_eq!(info.os.family, "Windows");
    assert_eq!(info.os_name, "Windows 10");
    assert_eq!(info.device.family, "Other");
    assert_eq!(info.br_type, "Browser");
    assert_eq!(info.br_renderengine, Some("BLINK"));
    assert_eq!(info.os_manufacturer, Some("Microsoft Corporation"));
    assert_eq!((info.dvce_type, info.dvce_ismobile), ("Computer", false));
    assert_eq!(
        info.context,
        json!({
            "useragentFamily": "Chrome", "useragentMajor": "120", "useragentMinor": "0",
            "useragentPatch": "6099", "useragentVersion": "Chrome 120.0.6099",
            "osFamily": "Windows", "osMajor": "10", "osMinor": null, "osPatch": null,
            "osPatchMinor": null, "osVersion": "Windows 10", "deviceFamily": "Other"
        })
    );
}

#[test]
fn safari_on_iphone() {
    let info = built_in().parse(SAFARI_IPHONE);
    assert_eq!(info.user_agent.family, "Mobile Safari");
    assert_eq!(info.br_version.as_deref(), Some("17.1.2"));
    assert_eq!(info.os.family, "iOS");
    assert_eq!(info.os.with_version(4), "iOS 17.1.2");
    assert_eq!(info.device.family, "iPhone");
    assert_eq!(info.device.brand.as_deref(), Some("Apple"));
    assert_eq!((info.dvce_type, info.dvce_ismobile), ("Mobile", true));
    assert_eq!(info.br_type, "Browser (mobile)");
    assert_eq!(info.br_renderengine, Some("WEBKIT"));
    assert_eq!(info.os_manufacturer, Some("Apple Inc."));
}

#[test]
fn ipad_is_a_tablet() {
    let info = built_in().parse(IPAD);
    assert_eq!(info.device.family, "iPad");
    assert_eq!((info.dvce_type, info.dvce_ismobile), ("Tablet", true));
}

#[test]
fn firefox_on_mac() {
    let info = built_in().parse(FIREFOX_MAC);
    assert_eq!(info.user_agent.family, "Firefox");
    assert_eq!(info.br_version.as_deref(), Some("121.0"));
    assert_eq!(info.os.family, "Mac OS X");
    assert_eq!(info.os_name, "Mac OS X 10.15");
    assert_eq!(info.br_renderengine, Some("GECKO"));
    assert_eq!(info.dvce_type, "Computer");
}

#[test]
fn googlebot_is_a_spider() {
    let info = built_in().parse(GOOGLEBOT);
    assert_eq!(info.user_agent.family, "Googlebot");
    assert_eq!(info.device.family, "Spider");
    assert_eq!(info.br_type, "Robot");
    let mut event = EnrichedEvent {
        useragent: Some(GOOGLEBOT.into()),
        ..EnrichedEvent::default()
    };
    assert!(built_in().apply(&mut event));
}

#[test]
fn garbage_is_other_and_never_panics() {
    for ua in [
        "",
        " ",
        "\u{0}\u{fffd}é中",
        "$1 $9 $",
        &"x".repeat(10_000),
        "Mozilla/5.0 (",
    ] {
        let info = built_in().parse(ua);
        assert!(!info.user_agent.family.is_empty());
        assert!(!info.os.family.is_empty());
        assert!(!info.device.family.is_empty());
    }
    let info = built_in().parse("nothing known here");
    assert_eq!(
        (
            info.user_agent.family.as_str(),
            info.os.family.as_str(),
            info.device.family.as_str()
        ),
        ("Other", "Other", "Other")
    );
    assert_eq!(info.context.to_value()["useragentVersion"], "Other");
    assert_eq!(info.context.to_value()["useragentMajor"], Value::Null);
}

#[test]
fn apply_fills_the_event_and_the_context() {
    let mut event = EnrichedEvent {
        useragent: Some(CHROME_WINDOWS.into()),
        ..EnrichedEvent::default()
    };
    assert!(!built_in().apply(&mut event));
    assert_eq!(event.br_family.as_deref(), Some("Chrome"));
    assert_eq!(event.br_name.as_deref(), Some("Chrome 120"));
    assert_eq!(event.br_version.as_deref(), Some("120.0.6099"));
    assert_eq!(event.br_type.as_deref(), Some("Browser"));
    assert_eq!(event.br_renderengine.as_deref(), Some("BLINK"));
    assert_eq!(event.os_family.as_deref(), Some("Windows"));
    assert_eq!(event.os_name.as_deref(), Some("Windows 10"));
    assert_eq!(event.dvce_type.as_deref(), Some("Computer"));
    assert_eq!(event.dvce_ismobile, Some(false));
    assert_eq!(event.derived_contexts.len(), 1);
    assert_eq!(
        event.derived_contexts[0].schema.to_string(),
        UA_PARSER_CONTEXT_SCHEMA
    );
    // No user agent, or a blank one: nothing.
    for useragent in [None, Some(""), Some("  ")] {
        let mut event = EnrichedEvent {
            useragent: useragent.map(Into::into),
            ..EnrichedEvent::default()
        };
        let before = event.clone();
        assert!(!built_in().apply(&mut event));
        assert_eq!(event, before);
    }
}

#[test]
fn cached_and_uncached_agree() {
    let uncached = UserAgent::new(&UserAgentConfig {
        cache_size: 0,
        ..UserAgentConfig::default()
    })
    .unwrap();
    for ua in [
        CHROME_WINDOWS,
        SAFARI_IPHONE,
        FIREFOX_MAC,
        GOOGLEBOT,
        CHROME_WINDOWS,
    ] {
        assert_eq!(*built_in().lookup(ua), *uncached.lookup(ua));
        assert_eq!(*built_in().lookup(ua), built_in().parse(ua));
    }
}

#[test]
fn cache_is_bounded_and_keeps_recent_entries() {
    let info = Arc::new(built_in().parse(CHROME_WINDOWS));
    let mut cache = Cache::new(4);
    for i in 0..100 {
        cache.insert(&format!("ua {i}"), Arc::clone(&info));
        // Keep one entry hot.
        assert!(cache.get("ua 0").is_some(), "after {i}");
        assert!(cache.len() <= 4);
    }
    assert!(cache.get("ua 1").is_none());
    assert!(cache.get("ua 99").is_some());
}

#[test]
fn replacements_follow_uap_semantics() {
    let rules = r#"
user_agent_parsers:
  - regex: '(Acme)Browser/(\d+)\.(\d+)'
    family_replacement: '$1 Pro'
    v2_replacement: 'x'
  - regex: '(plain)/(\d+)'
    regex_flag: 'i'
os_parsers:
  - regex: 'AcmeOS (\d+)_(\d+)'
    os_replacement: 'Acme OS'
    os_v1_replacement: '$1'
    os_v2_replacement: '$2'
  - regex: '(?<!look)behind'
device_parsers:
  - regex: 'Phone-(\w+)-(\w+)'
    device_replacement: 'Phone $2'
    brand_replacement: 'Brand$1'
    model_replacement: '$2 $3'
"#;
    let dir = std::env::temp_dir().join(format!("plowline-uap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("regexes.yaml");
    std::fs::write(&path, rules).unwrap();
    let parser = UserAgent::new(&UserAgentConfig {
        regexes: Some(path),
        ..UserAgentConfig::default()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    let parser = parser.unwrap();
    assert_eq!(parser.skipped_rules(), 1, "the look-behind is skipped");
    let info = parser.parse("AcmeBrowser/7.3 (AcmeOS 5_1; Phone-Zed-Z9)");
    assert_eq!(info.user_agent.family, "Acme Pro");
    assert_eq!(info.user_agent.major.as_deref(), Some("7"));
    assert_eq!(info.user_agent.minor.as_deref(), Some("x"));
    assert_eq!(info.os.family, "Acme OS");
    assert_eq!(
        (info.os.major.as_deref(), info.os.minor.as_deref()),
        (Some("5"), Some("1"))
    );
    assert_eq!(info.device.family, "Phone Z9");
    assert_eq!(info.device.brand.as_deref(), Some("BrandZed"));
    assert_eq!(
        info.device.model.as_deref(),
        Some("Z9"),
        "missing $3 is empty, then trimmed"
    );
    let info = parser.parse("PLAIN/42");
    assert_eq!(info.user_agent.family, "PLAIN");
    assert_eq!(info.user_agent.major.as_deref(), Some("42"));
}

#[test]
fn regexes_file_errors_name_the_file() {
    let error = UserAgent::new(&UserAgentConfig {
        regexes: Some("/nonexistent/regexes.yaml".into()),
        ..UserAgentConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("/nonexistent/regexes.yaml") && error.contains("regexes"),
        "{error}"
    );
}
