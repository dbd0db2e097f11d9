//! Spider and robot flag from the user agent: flags, never drops.
//!
//! Every event with a non-empty `useragent` gets the derived context
//! `iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0`:
//! `{"spiderOrRobot": bool, "category": "SPIDER_OR_ROBOT" | "BROWSER",
//! "reason": "FAILED_UA_EXCLUDE" | "PASSED_ALL", "primaryImpact": "NONE"}`.
//! A user agent is a robot when it contains, ignoring ASCII case, one of our built-in patterns
//! ([`BUILT_IN_PATTERNS`]) or one of the configured `extra_patterns`, or when the user-agent
//! enrichment's uap-core rules call its device a `Spider`. `primaryImpact` is always `NONE`: we
//! do not know what the robot counted.

use std::sync::Arc;

use plowline_collector::tracker::{SchemaKey, SelfDescribing};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_json::json;

use super::user_agent::UaInfo;
use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// The schema of the context.
pub const SPIDERS_AND_ROBOTS_SCHEMA: &str =
    "iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0";

/// Substrings (ASCII case-insensitive) that mark a user agent as a spider or robot. Our own list.
pub const BUILT_IN_PATTERNS: &[&str] = &[
    "bot/",
    "bot-",
    "bot;",
    "bot)",
    "bot ",
    "bot.",
    "bot+",
    "robot",
    "+http",
    "crawler",
    "crawl",
    "spider",
    "slurp",
    "scraper",
    "archiver",
    "fetcher",
    "monitor",
    "pingdom",
    "uptime",
    "headlesschrome",
    "phantomjs",
    "puppeteer",
    "playwright",
    "selenium",
    "lighthouse",
    "pagespeed",
    "chrome-lighthouse",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "ruby",
    "guzzlehttp",
    "postmanruntime",
    "insomnia",
    "facebookexternalhit",
    "embedly",
    "quora link preview",
    "whatsapp",
    "mediapartners-google",
    "adsbot-google",
    "feedfetcher",
    "google-read-aloud",
    "bingpreview",
    "yahoo! slurp",
    "ia_archiver",
    "semrush",
    "ahrefs",
    "mj12",
    "dotbot",
    "petalbot",
    "bytespider",
    "gptbot",
    "chatgpt-user",
    "claudebot",
    "ccbot",
    "perplexitybot",
    "amazonbot",
    "applebot",
    "yandex.com/bots",
];

/// `[enrichments.bot]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    /// Add the spiders-and-robots context. Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// More substrings (ASCII case-insensitive, taken literally) that mark a robot, on top of
    /// the built-in list. Default none.
    #[serde(default)]
    pub extra_patterns: Vec<String>,
}

fn default_enabled() -> bool {
    true
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            enabled: default_enabled(),
            extra_patterns: Vec::new(),
        }
    }
}

/// The bot flag, its patterns compiled into one case-insensitive matcher.
#[derive(Debug, Clone)]
pub struct Bot {
    patterns: Regex,
    /// The two possible contexts, built once.
    robot: SelfDescribing,
    browser: SelfDescribing,
}

impl Bot {
    /// Compiles the built-in and extra patterns.
    pub fn new(config: &BotConfig) -> Result<Bot, EnrichmentsError> {
        let alternatives: Vec<String> = BUILT_IN_PATTERNS
            .iter()
            .copied()
            .chain(config.extra_patterns.iter().map(String::as_str))
            .filter(|p| !p.is_empty())
            .map(regex::escape)
            .collect();
        let patterns = RegexBuilder::new(&alternatives.join("|"))
            .case_insensitive(true)
            .unicode(false)
            .size_limit(1 << 24)
            .build()
            .map_err(|error| EnrichmentsError::Config {
                table: "bot",
                key: "extra_patterns",
                reason: format!("the patterns do not compile ({error}); use fewer or shorter ones"),
            })?;
        Ok(Bot {
            patterns,
            robot: context(true),
            browser: context(false),
        })
    }

    /// Whether `user_agent` is a spider or robot by the patterns.
    pub fn is_robot(&self, user_agent: &str) -> bool {
        self.patterns.is_match(user_agent)
    }

    /// Adds the context to `event` when it has a user agent; `spider_by_uap` is the user-agent
    /// enrichment's verdict (its device family is `Spider`).
    pub fn apply(&self, event: &mut EnrichedEvent, spider_by_uap: bool) {
        if let Some(user_agent) = user_agent(event) {
            let robot = spider_by_uap || self.is_robot(user_agent);
            self.push(event, robot);
        }
    }

    /// [`apply`](Bot::apply) when the user-agent enrichment has parsed `event`'s user agent
    /// into `parsed`: the pattern verdict is cached there, so repeated agents are matched once.
    pub fn apply_parsed(&self, event: &mut EnrichedEvent, parsed: &UaInfo) {
        if let Some(user_agent) = user_agent(event) {
            let robot = parsed.device.family == "Spider"
                || *parsed
                    .robot_by_patterns
                    .get_or_init(|| self.is_robot(user_agent));
            self.push(event, robot);
        }
    }

    fn push(&self, event: &mut EnrichedEvent, robot: bool) {
        let context = if robot { &self.robot } else { &self.browser };
        event.derived_contexts.push(context.clone());
    }
}

/// The user agent of `event`, unless absent or blank.
fn user_agent<'e>(event: &'e EnrichedEvent<'_>) -> Option<&'e str> {
    event
        .useragent
        .as_deref()
        .filter(|ua| !ua.trim().is_empty())
}

/// The context for a verdict.
fn context(robot: bool) -> SelfDescribing {
    let (category, reason) = if robot {
        ("SPIDER_OR_ROBOT", "FAILED_UA_EXCLUDE")
    } else {
        ("BROWSER", "PASSED_ALL")
    };
    SelfDescribing {
        schema: Arc::new(SchemaKey {
            vendor: "com.iab.snowplow".to_owned(),
            name: "spiders_and_robots".to_owned(),
            format: "jsonschema".to_owned(),
            model: 1,
            revision: 0,
            addition: 0,
        }),
        data: json!({
            "spiderOrRobot": robot,
            "category": category,
            "reason": reason,
            "primaryImpact": "NONE",
        })
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(bot: &Bot, ua: Option<&str>, by_uap: bool) -> Option<serde_json::Value> {
        let mut event = EnrichedEvent {
            useragent: ua.map(Into::into),
            ..EnrichedEvent::default()
        };
        bot.apply(&mut event, by_uap);
        assert!(event.derived_contexts.len() <= 1);
        event.derived_contexts.pop().map(|context| {
            assert_eq!(context.schema.to_string(), SPIDERS_AND_ROBOTS_SCHEMA);
            context.data.to_value()
        })
    }

    #[test]
    fn robots_and_browsers() {
        let bot = Bot::new(&BotConfig::default()).unwrap();
        let robots = [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Some Web CRAWLER v1",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        ];
        for ua in robots {
            assert_eq!(
                flag(&bot, Some(ua), false).unwrap(),
                json!({"spiderOrRobot": true, "category": "SPIDER_OR_ROBOT", "reason": "FAILED_UA_EXCLUDE", "primaryImpact": "NONE"}),
                "{ua}"
            );
        }
        let browsers = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
            "Mozilla/5.0 (Linux; Android 9; CUBOT_X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0.4664.45 Mobile Safari/537.36",
        ];
        for ua in browsers {
            assert_eq!(
                flag(&bot, Some(ua), false).unwrap(),
                json!({"spiderOrRobot": false, "category": "BROWSER", "reason": "PASSED_ALL", "primaryImpact": "NONE"}),
                "{ua}"
            );
        }
        assert_eq!(
            flag(&bot, Some(browsers[0]), true).unwrap()["spiderOrRobot"],
            true
        );
        assert_eq!(flag(&bot, None, false), None);
        assert_eq!(flag(&bot, Some("  "), false), None);
    }

    #[test]
    fn extra_patterns_are_literal() {
        let bot = Bot::new(&BotConfig {
            enabled: true,
            extra_patterns: vec!["Acme-Checker (v1.*)".into()],
        })
        .unwrap();
        assert!(bot.is_robot("acme-checker (v1.*) probe"));
        assert!(!bot.is_robot("acme-checker (v1.2) probe"));
    }
}
