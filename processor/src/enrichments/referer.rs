//! Referer classification: `refr_medium`, `refr_source`, `refr_term` from `page_referrer`.
//!
//! - `internal` (no source, no term) when the referer's host is the page's host or one of the
//!   configured internal domains (exact host match, case-insensitive);
//! - otherwise the referer is looked up in a table of known referers — the Snowplow
//!   referer-parser database (`referers.yml`, or its JSON form) given by path, else a small
//!   built-in table of the big search engines, social networks, webmails and chatbots. A table
//!   maps a medium (`search`, `social`, `email`, `chatbot`, …) to sources, each with its domains
//!   (a host, optionally with a path: `google.com/products`) and, for search engines, the query
//!   parameters that carry the search term;
//! - the lookup tries the host with the referer's whole path, with its first path segment, then
//!   the bare host, then the same for each parent domain (`www.google.co.uk` → `google.co.uk`);
//! - `refr_term` is the first non-empty query parameter of the referer (in query order) that the
//!   source lists;
//! - `unknown` (no source) for any other referer with a host. A `page_referrer` that is not an
//!   absolute URL leaves the three fields alone.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use plowline_collector::tracker::parse_query;
use serde::Deserialize;

use super::url::UrlParts;
use super::EnrichmentsError;
use crate::event::EnrichedEvent;

/// `[enrichments.referer]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefererConfig {
    /// Classify `page_referrer`. Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The Snowplow referer-parser database (`referers.yml`, or `referers.json`), loaded once at
    /// start. Absent: a small built-in table of the main search engines, social networks,
    /// webmails and chatbots.
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// Hosts whose referrals count as `internal`, besides the page's own host, e.g.
    /// `["shop.example.com", "checkout.example.com"]`. Exact hosts, case-insensitive.
    #[serde(default)]
    pub internal_domains: Vec<String>,
}

fn default_enabled() -> bool {
    true
}

impl Default for RefererConfig {
    fn default() -> Self {
        RefererConfig {
            enabled: default_enabled(),
            database: None,
            internal_domains: Vec::new(),
        }
    }
}

/// A known referer source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    medium: String,
    name: String,
    parameters: Vec<String>,
}

/// One source of the referer-parser database file.
#[derive(Debug, Deserialize)]
struct SourceSpec {
    domains: Vec<String>,
    #[serde(default)]
    parameters: Vec<String>,
}

/// The file's shape: medium → source name → spec.
type Database = BTreeMap<String, BTreeMap<String, SourceSpec>>;

/// The referer enrichment, its table loaded.
#[derive(Debug, Clone)]
pub struct Referer {
    sources: Vec<Source>,
    /// Lower-case `host` or `host/path` (no trailing `/`) → index into `sources`.
    by_domain: HashMap<String, usize>,
    /// Whether any key has a path, so that lookups with a path are worth trying.
    has_paths: bool,
    internal: HashSet<String>,
}

/// The built-in table: (medium, source, domains, search parameters). Our own data.
const BUILT_IN: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "search",
        "Google",
        &[
            "google.com",
            "google.co.uk",
            "google.de",
            "google.fr",
            "google.es",
            "google.it",
            "google.nl",
            "google.be",
            "google.ch",
            "google.at",
            "google.pl",
            "google.pt",
            "google.se",
            "google.dk",
            "google.no",
            "google.fi",
            "google.ie",
            "google.ca",
            "google.com.au",
            "google.co.nz",
            "google.co.in",
            "google.co.jp",
            "google.com.br",
            "google.com.mx",
            "google.com.ar",
            "google.ru",
            "google.com.tr",
            "google.co.za",
            "google.cz",
            "google.gr",
            "google.ro",
            "google.hu",
            "google.com.sg",
            "google.co.kr",
        ],
        &["q"],
    ),
    ("search", "Bing", &["bing.com", "cn.bing.com"], &["q"]),
    (
        "search",
        "Yahoo!",
        &["search.yahoo.com", "yahoo.com", "yahoo.co.jp"],
        &["p", "q"],
    ),
    ("search", "DuckDuckGo", &["duckduckgo.com"], &["q"]),
    ("search", "Baidu", &["baidu.com"], &["wd", "word", "kw"]),
    (
        "search",
        "Yandex",
        &["yandex.ru", "yandex.com", "yandex.com.tr", "ya.ru"],
        &["text"],
    ),
    ("search", "Ecosia", &["ecosia.org"], &["q"]),
    ("social", "Facebook", &["facebook.com", "fb.me"], &[]),
    ("social", "Twitter", &["twitter.com", "x.com", "t.co"], &[]),
    ("social", "LinkedIn", &["linkedin.com", "lnkd.in"], &[]),
    ("social", "Instagram", &["instagram.com"], &[]),
    ("social", "Reddit", &["reddit.com"], &[]),
    ("social", "YouTube", &["youtube.com", "youtu.be"], &[]),
    ("social", "Pinterest", &["pinterest.com"], &[]),
    ("social", "TikTok", &["tiktok.com"], &[]),
    ("email", "Gmail", &["mail.google.com"], &[]),
    ("email", "Outlook.com", &["outlook.live.com"], &[]),
    (
        "chatbot",
        "ChatGPT",
        &["chatgpt.com", "chat.openai.com"],
        &[],
    ),
    ("chatbot", "Perplexity", &["perplexity.ai"], &[]),
    ("chatbot", "Gemini", &["gemini.google.com"], &[]),
];

impl Referer {
    /// Loads the database file if one is configured, else takes the built-in table.
    pub fn new(config: &RefererConfig) -> Result<Referer, EnrichmentsError> {
        let mut referer = Referer {
            sources: Vec::new(),
            by_domain: HashMap::new(),
            has_paths: false,
            internal: config
                .internal_domains
                .iter()
                .map(|domain| domain.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        };
        match &config.database {
            Some(path) => {
                for (medium, sources) in load_database(path)? {
                    for (name, spec) in sources {
                        referer.add(&medium, &name, &spec.domains, spec.parameters);
                    }
                }
            }
            None => {
                for (medium, name, domains, parameters) in BUILT_IN {
                    let parameters = parameters.iter().map(|p| (*p).to_owned()).collect();
                    referer.add(medium, name, domains, parameters);
                }
            }
        }
        Ok(referer)
    }

    fn add<S: AsRef<str>>(
        &mut self,
        medium: &str,
        name: &str,
        domains: &[S],
        parameters: Vec<String>,
    ) {
        let index = self.sources.len();
        self.sources.push(Source {
            medium: medium.to_owned(),
            name: name.to_owned(),
            parameters,
        });
        for domain in domains {
            let key = domain
                .as_ref()
                .trim()
                .trim_end_matches('/')
                .to_ascii_lowercase();
            if key.is_empty() {
                continue;
            }
            self.has_paths |= key.contains('/');
            // The first source to claim a domain keeps it, as in referer-parser.
            self.by_domain.entry(key).or_insert(index);
        }
    }

    /// Sets `refr_medium`, `refr_source` and `refr_term` from `event.page_referrer`.
    pub fn apply(&self, event: &mut EnrichedEvent) {
        let Some(referer) = event.page_referrer.as_deref().and_then(UrlParts::parse) else {
            return;
        };
        let page = event.page_url.as_deref().and_then(UrlParts::parse);
        let host = referer.host_lowercase();
        let internal =
            page.is_some_and(|page| page.host_is(&host)) || self.internal.contains(&host);
        let (medium, source, term) = if internal {
            ("internal".to_owned(), None, None)
        } else if let Some(source) = self.lookup(&host, referer.path) {
            let term = referer.query.and_then(|query| {
                let params = parse_query(query.as_bytes());
                params
                    .iter()
                    .find(|p| {
                        !p.value().is_empty() && source.parameters.iter().any(|k| *k == p.key)
                    })
                    .map(|p| p.value().to_string())
            });
            (source.medium.clone(), Some(source.name.clone()), term)
        } else {
            ("unknown".to_owned(), None, None)
        };
        event.refr_medium = Some(Cow::Owned(medium));
        event.refr_source = source.map(Cow::Owned);
        event.refr_term = term.map(Cow::Owned);
    }

    /// The source for a lower-case host and the referer's path.
    fn lookup(&self, host: &str, path: &str) -> Option<&Source> {
        let path = path.trim_end_matches('/');
        let mut candidate = host;
        loop {
            if self.has_paths && !path.is_empty() {
                let first_segment = path
                    .get(1..)
                    .and_then(|rest| rest.find('/'))
                    .map_or(path, |end| &path[..end + 1]);
                for path in [path, first_segment] {
                    let key = format!("{candidate}{}", path.to_ascii_lowercase());
                    if let Some(&index) = self.by_domain.get(&key) {
                        return self.sources.get(index);
                    }
                }
            }
            if let Some(&index) = self.by_domain.get(candidate) {
                return self.sources.get(index);
            }
            match candidate.split_once('.') {
                Some((_, parent)) if parent.contains('.') => candidate = parent,
                _ => return None,
            }
        }
    }
}

/// Reads a referer-parser database, YAML or JSON.
fn load_database(path: &Path) -> Result<Database, EnrichmentsError> {
    let text = std::fs::read_to_string(path).map_err(|source| EnrichmentsError::Read {
        what: "referer database ([enrichments.referer] database)",
        path: path.to_owned(),
        source,
    })?;
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|error| error.to_string())
    } else {
        serde_yaml::from_str(&text).map_err(|error| error.to_string())
    };
    parsed.map_err(|reason| EnrichmentsError::Invalid {
        what: "referer database ([enrichments.referer] database)",
        path: path.to_owned(),
        reason: format!(
            "{reason}; expected referer-parser's layout: medium → source name → \
             {{ domains: [...], parameters: [...] }}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(
        referer: &Referer,
        page: &str,
        refr: &str,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let mut event = EnrichedEvent {
            page_url: Some(page.into()),
            page_referrer: Some(refr.into()),
            ..EnrichedEvent::default()
        };
        referer.apply(&mut event);
        let owned = |text: Option<Cow<'_, str>>| text.map(Cow::into_owned);
        (
            owned(event.refr_medium),
            owned(event.refr_source),
            owned(event.refr_term),
        )
    }

    fn triple(
        medium: &str,
        source: Option<&str>,
        term: Option<&str>,
    ) -> (Option<String>, Option<String>, Option<String>) {
        (
            Some(medium.to_owned()),
            source.map(str::to_owned),
            term.map(str::to_owned),
        )
    }

    #[test]
    fn built_in_table() {
        let referer = Referer::new(&RefererConfig::default()).unwrap();
        let page = "https://shop.example.com/";
        let cases = [
            (
                "https://www.google.co.uk/search?q=red+shoes&hl=en",
                triple("search", Some("Google"), Some("red shoes")),
            ),
            (
                "https://www.bing.com/search?form=x&q=caf%C3%A9",
                triple("search", Some("Bing"), Some("café")),
            ),
            (
                "https://search.yahoo.com/search?p=boots",
                triple("search", Some("Yahoo!"), Some("boots")),
            ),
            (
                "https://duckduckgo.com/",
                triple("search", Some("DuckDuckGo"), None),
            ),
            (
                "https://www.baidu.com/s?wd=x",
                triple("search", Some("Baidu"), Some("x")),
            ),
            (
                "https://yandex.ru/search/?text=y",
                triple("search", Some("Yandex"), Some("y")),
            ),
            (
                "https://www.ecosia.org/search?q=z",
                triple("search", Some("Ecosia"), Some("z")),
            ),
            (
                "https://m.facebook.com/story",
                triple("social", Some("Facebook"), None),
            ),
            ("https://t.co/abc", triple("social", Some("Twitter"), None)),
            (
                "https://x.com/someone",
                triple("social", Some("Twitter"), None),
            ),
            (
                "https://mail.google.com/mail/u/0/",
                triple("email", Some("Gmail"), None),
            ),
            (
                "https://outlook.live.com/mail/",
                triple("email", Some("Outlook.com"), None),
            ),
            (
                "https://chatgpt.com/",
                triple("chatbot", Some("ChatGPT"), None),
            ),
            (
                "https://gemini.google.com/app",
                triple("chatbot", Some("Gemini"), None),
            ),
            (
                "https://www.perplexity.ai/search?q=a",
                triple("chatbot", Some("Perplexity"), None),
            ),
            ("https://blog.other.org/post", triple("unknown", None, None)),
            (
                "https://SHOP.example.com/cart",
                triple("internal", None, None),
            ),
        ];
        for (refr, expected) in cases {
            assert_eq!(classify(&referer, page, refr), expected, "{refr}");
        }
    }

    #[test]
    fn internal_domains_and_unparseable_referers() {
        let referer = Referer::new(&RefererConfig {
            internal_domains: vec!["Checkout.Example.com".into()],
            ..RefererConfig::default()
        })
        .unwrap();
        assert_eq!(
            classify(
                &referer,
                "https://shop.example.com/",
                "https://checkout.example.com/pay?q=1"
            ),
            triple("internal", None, None)
        );
        assert_eq!(
            classify(&referer, "https://shop.example.com/", "not a url"),
            (None, None, None)
        );
        // No page URL: the referer is still classified.
        let mut event = EnrichedEvent {
            page_referrer: Some("https://www.google.com/".into()),
            ..EnrichedEvent::default()
        };
        referer.apply(&mut event);
        assert_eq!(event.refr_source.as_deref(), Some("Google"));
    }

    const FIXTURE: &str = r#"
search:
  Google:
    parameters:
      - q
    domains:
      - google.com
      - google.de
  Google Product Search:
    parameters:
      - q
    domains:
      - google.com/products
  Example Search:
    parameters: [query, q]
    domains: [search.example.net]
social:
  Mastodon:
    domains:
      - mastodon.social
email:
  Example Mail:
    domains:
      - mail.example.net
"#;

    fn fixture_referer(name: &str, text: &str) -> Referer {
        let dir =
            std::env::temp_dir().join(format!("plowline-referer-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let referer = Referer::new(&RefererConfig {
            database: Some(path),
            ..RefererConfig::default()
        });
        std::fs::remove_dir_all(&dir).unwrap();
        referer.unwrap()
    }

    #[test]
    fn database_file_with_paths_and_parents() {
        let referer = fixture_referer("referers.yml", FIXTURE);
        let page = "https://shop.example.com/";
        let cases = [
            (
                "https://www.google.de/search?q=boots",
                triple("search", Some("Google"), Some("boots")),
            ),
            (
                "https://www.google.com/products/catalog?q=tv",
                triple("search", Some("Google Product Search"), Some("tv")),
            ),
            (
                "https://google.com/productsx?q=tv",
                triple("search", Some("Google"), Some("tv")),
            ),
            (
                "https://eu.search.example.net/?q=&query=lamp",
                triple("search", Some("Example Search"), Some("lamp")),
            ),
            (
                "https://mastodon.social/@a",
                triple("social", Some("Mastodon"), None),
            ),
            (
                "https://mail.example.net/",
                triple("email", Some("Example Mail"), None),
            ),
            // Not in the file: the built-in table is not consulted.
            (
                "https://www.bing.com/search?q=a",
                triple("unknown", None, None),
            ),
        ];
        for (refr, expected) in cases {
            assert_eq!(classify(&referer, page, refr), expected, "{refr}");
        }
    }

    #[test]
    fn database_file_as_json() {
        let json =
            r#"{"search": {"Findit": {"domains": ["findit.example"], "parameters": ["k"]}}}"#;
        let referer = fixture_referer("referers.json", json);
        assert_eq!(
            classify(&referer, "https://a.example/", "http://findit.example/?k=x"),
            triple("search", Some("Findit"), Some("x"))
        );
    }

    #[test]
    fn database_errors_name_the_file() {
        let missing = Referer::new(&RefererConfig {
            database: Some("/nonexistent/referers.yml".into()),
            ..RefererConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(missing.contains("/nonexistent/referers.yml"), "{missing}");
        let dir = std::env::temp_dir().join(format!("plowline-referer-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("referers.yml");
        std::fs::write(&path, "search: [1, 2]\n").unwrap();
        let invalid = Referer::new(&RefererConfig {
            database: Some(path.clone()),
            ..RefererConfig::default()
        })
        .unwrap_err()
        .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            invalid.contains("referers.yml") && invalid.contains("domains"),
            "{invalid}"
        );
    }
}
