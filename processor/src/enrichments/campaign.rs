//! Campaign attribution: `mkt_*` fields from the marketing parameters of the page URL.
//!
//! The query of `page_url` is form-decoded (`%XX`, `+` as a space). Each `mkt_*` field takes the
//! first non-empty value among its configured parameters (by default `utm_medium`, `utm_source`,
//! `utm_term`, `utm_content`, `utm_campaign`). The first click-id parameter of the query (by
//! default `gclid`, `msclkid`, `dclid`) sets `mkt_clickid` to its value and `mkt_network` to the
//! network configured for it (`Google`, `Microsoft`, `DoubleClick`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use plowline_collector::tracker::{parse_query, Params};
use serde::Deserialize;

use super::url::UrlParts;
use crate::event::EnrichedEvent;

/// `[enrichments.campaign]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Fill the `mkt_*` fields from the page URL. Default `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Query parameters read into `mkt_medium`, first non-empty wins. Default `["utm_medium"]`.
    #[serde(default = "default_medium")]
    pub medium: Vec<String>,
    /// Query parameters read into `mkt_source`. Default `["utm_source"]`.
    #[serde(default = "default_source")]
    pub source: Vec<String>,
    /// Query parameters read into `mkt_term`. Default `["utm_term"]`.
    #[serde(default = "default_term")]
    pub term: Vec<String>,
    /// Query parameters read into `mkt_content`. Default `["utm_content"]`.
    #[serde(default = "default_content")]
    pub content: Vec<String>,
    /// Query parameters read into `mkt_campaign`. Default `["utm_campaign"]`.
    #[serde(default = "default_campaign")]
    pub campaign: Vec<String>,
    /// Click-id parameter → network name written to `mkt_network` (its value goes to
    /// `mkt_clickid`). Default `{ gclid = "Google", msclkid = "Microsoft", dclid = "DoubleClick" }`.
    #[serde(default = "default_click_ids")]
    pub click_ids: BTreeMap<String, String>,
}

fn default_enabled() -> bool {
    true
}

fn default_medium() -> Vec<String> {
    vec!["utm_medium".to_owned()]
}

fn default_source() -> Vec<String> {
    vec!["utm_source".to_owned()]
}

fn default_term() -> Vec<String> {
    vec!["utm_term".to_owned()]
}

fn default_content() -> Vec<String> {
    vec!["utm_content".to_owned()]
}

fn default_campaign() -> Vec<String> {
    vec!["utm_campaign".to_owned()]
}

fn default_click_ids() -> BTreeMap<String, String> {
    [
        ("gclid", "Google"),
        ("msclkid", "Microsoft"),
        ("dclid", "DoubleClick"),
    ]
    .into_iter()
    .map(|(key, network)| (key.to_owned(), network.to_owned()))
    .collect()
}

impl Default for CampaignConfig {
    fn default() -> Self {
        CampaignConfig {
            enabled: default_enabled(),
            medium: default_medium(),
            source: default_source(),
            term: default_term(),
            content: default_content(),
            campaign: default_campaign(),
            click_ids: default_click_ids(),
        }
    }
}

/// The campaign enrichment, ready to run.
#[derive(Debug, Clone)]
pub struct Campaign {
    config: CampaignConfig,
}

impl Campaign {
    /// Takes the configuration as it is: every parameter list is valid, even an empty one.
    pub fn new(config: &CampaignConfig) -> Campaign {
        Campaign {
            config: config.clone(),
        }
    }

    /// Fills `mkt_*` from the query of `event.page_url`; leaves them alone when the URL has no
    /// query or none of the parameters.
    pub fn apply(&self, event: &mut EnrichedEvent) {
        let Some(query) = event
            .page_url
            .as_deref()
            .and_then(UrlParts::parse)
            .and_then(|url| url.query)
        else {
            return;
        };
        let params = parse_query(query.as_bytes());
        let fields = [
            (&self.config.medium, &mut event.mkt_medium),
            (&self.config.source, &mut event.mkt_source),
            (&self.config.term, &mut event.mkt_term),
            (&self.config.content, &mut event.mkt_content),
            (&self.config.campaign, &mut event.mkt_campaign),
        ];
        for (keys, field) in fields {
            if let Some(value) = first_value(&params, keys) {
                *field = Some(Cow::Owned(value.to_owned()));
            }
        }
        let click = params.iter().find_map(|param| {
            let network = self.config.click_ids.get(&*param.key)?;
            (!param.value().is_empty()).then_some((network, param.value()))
        });
        if let Some((network, value)) = click {
            event.mkt_clickid = Some(Cow::Owned(value.to_string()));
            event.mkt_network = Some(Cow::Owned(network.clone()));
        }
    }
}

/// The first non-empty value among `keys`, in the order of `keys`.
fn first_value<'p>(params: &'p Params<'_>, keys: &[String]) -> Option<&'p str> {
    keys.iter()
        .filter_map(|key| params.get(key))
        .find(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &CampaignConfig, url: &str) -> EnrichedEvent<'static> {
        let mut event = EnrichedEvent {
            page_url: Some(Cow::Owned(url.to_owned())),
            ..EnrichedEvent::default()
        };
        Campaign::new(config).apply(&mut event);
        event
    }

    #[test]
    fn reads_utm_parameters_decoded() {
        let event = run(
            &CampaignConfig::default(),
            "https://shop.example.com/p?utm_source=news%20letter&utm_medium=email\
             &utm_term=red+shoes&utm_content=top%2Bbanner&utm_campaign=spring_sale#x",
        );
        assert_eq!(event.mkt_source.as_deref(), Some("news letter"));
        assert_eq!(event.mkt_medium.as_deref(), Some("email"));
        assert_eq!(event.mkt_term.as_deref(), Some("red shoes"));
        assert_eq!(event.mkt_content.as_deref(), Some("top+banner"));
        assert_eq!(event.mkt_campaign.as_deref(), Some("spring_sale"));
        assert_eq!(event.mkt_clickid, None);
        assert_eq!(event.mkt_network, None);
    }

    #[test]
    fn click_ids_set_the_network() {
        for (param, network) in [
            ("gclid", "Google"),
            ("msclkid", "Microsoft"),
            ("dclid", "DoubleClick"),
        ] {
            let event = run(
                &CampaignConfig::default(),
                &format!("http://a.com/?x=1&{param}=abc-123"),
            );
            assert_eq!(event.mkt_clickid.as_deref(), Some("abc-123"));
            assert_eq!(event.mkt_network.as_deref(), Some(network));
        }
        // The first click id of the query wins; an empty one is ignored.
        let event = run(
            &CampaignConfig::default(),
            "http://a.com/?gclid=&msclkid=m1&gclid=g2",
        );
        assert_eq!(event.mkt_clickid.as_deref(), Some("m1"));
        assert_eq!(event.mkt_network.as_deref(), Some("Microsoft"));
    }

    #[test]
    fn configured_parameters_in_order() {
        let config = CampaignConfig {
            source: vec!["src".into(), "utm_source".into()],
            click_ids: [("fbclid".to_owned(), "Facebook".to_owned())].into(),
            ..CampaignConfig::default()
        };
        let event = run(&config, "http://a.com/?utm_source=u&src=&fbclid=f&gclid=g");
        assert_eq!(event.mkt_source.as_deref(), Some("u"));
        let event = run(&config, "http://a.com/?utm_source=u&src=s&fbclid=f&gclid=g");
        assert_eq!(event.mkt_source.as_deref(), Some("s"));
        assert_eq!(event.mkt_network.as_deref(), Some("Facebook"));
        assert_eq!(event.mkt_clickid.as_deref(), Some("f"));
    }

    #[test]
    fn no_url_no_query_no_change() {
        for url in [
            "",
            "not a url",
            "http://a.com/path",
            "http://a.com/?",
            "http://a.com/?%zz&&=",
        ] {
            let event = run(&CampaignConfig::default(), url);
            assert_eq!(
                (event.mkt_medium, event.mkt_source, event.mkt_clickid),
                (None, None, None),
                "{url:?}"
            );
        }
    }
}
