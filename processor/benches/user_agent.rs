//! The user-agent enrichment: uap-core rules over a mix of real-world user agents, uncached
//! (every call runs the rules) and cached (the steady state, where agents repeat); then each
//! enrichment alone and the default chain on page views with two context entities (`none` is the
//! cost of building the event and its parameters, to subtract).
//!
//! `cargo bench -p plowline-processor --bench user_agent`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plowline_collector::tracker::{Param, Params};
use plowline_processor::enrichments::{Enrichments, EnrichmentsConfig, UserAgent, UserAgentConfig};
use plowline_processor::event::EnrichedEvent;

const UAS: [&str; 10] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
];

fn user_agent(c: &mut Criterion) {
    let cached = UserAgent::new(&UserAgentConfig::default()).unwrap();
    let uncached = UserAgent::new(&UserAgentConfig {
        cache_size: 0,
        ..UserAgentConfig::default()
    })
    .unwrap();
    let mut group = c.benchmark_group("user_agent");
    group.throughput(Throughput::Elements(UAS.len() as u64));
    group.bench_function("uncached_parse", |b| {
        b.iter(|| {
            for ua in UAS {
                std::hint::black_box(uncached.lookup(ua));
            }
        })
    });
    group.bench_function("cached_lookup", |b| {
        b.iter(|| {
            for ua in UAS {
                std::hint::black_box(cached.lookup(ua));
            }
        })
    });
    group.bench_function("cached_apply", |b| {
        b.iter(|| {
            for ua in UAS {
                let mut event = EnrichedEvent {
                    useragent: Some(ua.into()),
                    ..EnrichedEvent::default()
                };
                cached.apply(&mut event);
                std::hint::black_box(event);
            }
        })
    });
    group.finish();
}

/// Each enrichment alone (all others off), then the default chain, on the same page views.
fn enrichments(c: &mut Criterion) {
    let off = |config: &mut EnrichmentsConfig| {
        config.user_agent.enabled = false;
        config.bot.enabled = false;
        config.referer.enabled = false;
        config.campaign.enabled = false;
        config.fingerprint.enabled = false;
    };
    type Switch = fn(&mut EnrichmentsConfig);
    let cases: [(&str, Option<Switch>); 7] = [
        ("none", Some(|_| {})),
        ("user_agent", Some(|c| c.user_agent.enabled = true)),
        ("bot", Some(|c| c.bot.enabled = true)),
        ("referer", Some(|c| c.referer.enabled = true)),
        ("campaign", Some(|c| c.campaign.enabled = true)),
        ("fingerprint", Some(|c| c.fingerprint.enabled = true)),
        ("defaults", None),
    ];
    let url = "https://shop.example.com/p/42?utm_source=news&utm_medium=email&gclid=abc";
    let refr = "https://www.google.co.uk/search?q=red+shoes";
    let mut group = c.benchmark_group("enrichments");
    group.throughput(Throughput::Elements(UAS.len() as u64));
    for (name, switch) in cases {
        let mut config = EnrichmentsConfig::default();
        if let Some(switch) = switch {
            off(&mut config);
            switch(&mut config);
        }
        let enrichments = Enrichments::new(&config).unwrap();
        group.bench_function(name, |b| {
            let mut n = 0u64;
            b.iter(|| {
                for ua in UAS {
                    n += 1;
                    let id = format!("c6ef3124-b53a-4b13-a233-{n:012}");
                    let params: Params<'_> = [
                        Param::new("e", "pv"),
                        Param::new("eid", id.as_str()),
                        Param::new("url", url),
                        Param::new("refr", refr),
                        Param::new("ua", ua),
                        Param::new("tv", "js-3.17.0"),
                        Param::new("duid", "0b2f2c1d-5d1e-4b8e-9a53-2f0f5c6a7e01"),
                        Param::new("dtm", "1700000000000"),
                        Param::new("co", CONTEXTS),
                    ]
                    .into_iter()
                    .collect();
                    let mut event = EnrichedEvent {
                        event_id: Some(id.as_str().into()),
                        page_url: Some(url.into()),
                        page_referrer: Some(refr.into()),
                        useragent: Some(ua.into()),
                        user_ipaddress: Some("203.0.113.42".into()),
                        ..EnrichedEvent::default()
                    };
                    std::hint::black_box(enrichments.apply(&mut event, &params));
                    std::hint::black_box(event);
                }
            })
        });
    }
    group.finish();
}

/// Two context entities, as a tracker with the webPage and a product entity sends them.
const CONTEXTS: &str = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[{"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"5b4ad3c3-9a8e-4f5e-8b9a-1f2e3d4c5b6a"}},{"schema":"iglu:com.acme/product/jsonschema/1-0-2","data":{"sku":"SKU-12345","name":"Red running shoes","price":89.99,"currency":"EUR","category":"shoes/running","tags":["sale","new"]}}]}"#;

criterion_group!(benches, user_agent, enrichments);
criterion_main!(benches);
