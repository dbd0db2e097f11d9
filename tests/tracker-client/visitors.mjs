#!/usr/bin/env node
// plowline visitor simulator: realistic web traffic for the quickstart and the end-to-end test,
// sent through the real @snowplow/node-tracker emitter (GET /i, bufferSize 1) to a collector
// (plowline's nginx). Simulated visitors of a small outdoor shop browse in sessions: page views
// with page pings, structured events, self-describing events, campaigns and referers, several
// browsers (User-Agent header + `ua`) and countries (X-Forwarded-For from geo-demo.json).
// Run with --help for the options. Exit status: 0 when every hit got 200 + an image, 1 otherwise,
// 2 on bad usage.

import http from 'node:http';
import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';
import {
  newTracker,
  buildPageView,
  buildPagePing,
  buildStructEvent,
  buildSelfDescribingEvent,
} from '@snowplow/node-tracker';

const USAGE = `usage: node visitors.mjs --endpoint http://127.0.0.1:PORT [options]

  --visitors N       simulated visitors (default 200); each plays 1-3 sessions per visit and
                     comes back for more sessions if the hit budget needs more traffic
  --hits N           total hits to send (default 2000 unless --duration-s is given)
  --duration-s S     with --rate: send exactly round(R*S) hits; without: send for S seconds
  --rate R           send at a steady R hits/s (default: as fast as nginx answers)
  --concurrency N    requests in flight at most (default 64; one per active visitor)
  --seed N           PRNG seed; the same seed gives the same visitors, sessions and events
                     (default: random, printed in the summary)
  --out FILE         one JSON line per hit: eid, e, sent_ms, visitor, session, country, ...
  --progress         a progress line on stderr about once a second
  --timeout-ms N     per-request timeout (default 10000)`;

const APP_ID = 'acme-shop';
const NAMESPACE = 'sp';
const SITE = 'https://shop.example.com';
const WEB_PAGE = 'iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0';
const LINK_CLICK = 'iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1';
const CHECKOUT_STEP = 'iglu:com.acme/checkout_step/jsonschema/1-0-0';

// ---------------------------------------------------------------------------------------------
// Arguments

function usage(msg) {
  if (!msg) {
    console.log(USAGE);
    process.exit(0);
  }
  console.error(`visitors.mjs: ${msg}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { visitors: 200, concurrency: 64, timeoutMs: 10000, progress: false };
  const num = (name, v, min) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) usage(`${name} must be a number >= ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const [arg, inline] = argv[i].startsWith('--') && argv[i].includes('=')
      ? [argv[i].slice(0, argv[i].indexOf('=')), argv[i].slice(argv[i].indexOf('=') + 1)]
      : [argv[i], undefined];
    const next = () => inline ?? (i + 1 < argv.length ? argv[++i] : usage(`${arg} needs a value`));
    switch (arg) {
      case '--endpoint': o.endpoint = next(); break;
      case '--visitors': o.visitors = Math.floor(num(arg, next(), 1)); break;
      case '--rate': o.rate = num(arg, next(), 0.001); break;
      case '--duration-s': o.durationS = num(arg, next(), 0.001); break;
      case '--hits': o.hits = Math.floor(num(arg, next(), 1)); break;
      case '--concurrency': o.concurrency = Math.floor(num(arg, next(), 1)); break;
      case '--seed': o.seed = Math.floor(num(arg, next(), 0)) >>> 0; break;
      case '--out': o.out = next(); break;
      case '--timeout-ms': o.timeoutMs = num(arg, next(), 1); break;
      case '--progress': o.progress = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${arg}`);
    }
  }
  if (!o.endpoint) usage('--endpoint is required');
  if (o.hits !== undefined && o.durationS !== undefined) usage('--hits and --duration-s exclude each other');
  let ep;
  try { ep = new URL(o.endpoint); } catch { usage(`bad --endpoint ${o.endpoint}`); }
  if (ep.protocol !== 'http:' || ep.pathname !== '/' || ep.search) usage('--endpoint must be http://host:port');
  o.endpoint = ep.origin;
  o.host = ep.hostname.replace(/^\[|\]$/g, '');
  o.port = Number(ep.port || 80);
  // Budget: a fixed hit count (deterministic), or a time limit when --duration-s has no --rate.
  if (o.durationS !== undefined && o.rate !== undefined) o.hits = Math.max(1, Math.round(o.rate * o.durationS));
  if (o.hits === undefined && o.durationS === undefined) o.hits = 2000;
  o.seed ??= Math.floor(Math.random() * 2 ** 32) >>> 0;
  o.concurrency = Math.min(o.concurrency, o.visitors);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32): each visitor has its own stream, so what a visitor does depends
// only on --seed and its number, not on how requests interleave.

function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const int = (rng, lo, hi) => lo + Math.floor(rng() * (hi - lo + 1)); // inclusive
const pick = (rng, xs) => xs[Math.floor(rng() * xs.length)];
const chance = (rng, p) => rng() < p;
function weighted(rng, xs) { // xs: [{ w, ... }]
  let r = rng() * xs.reduce((s, x) => s + x.w, 0);
  for (const x of xs) if ((r -= x.w) < 0) return x;
  return xs[xs.length - 1];
}
function uuid(rng) { // RFC 4122 version 4 layout from the seeded stream
  const h = [];
  for (let i = 0; i < 16; i++) h.push(Math.floor(rng() * 256));
  h[6] = (h[6] & 0x0f) | 0x40;
  h[8] = (h[8] & 0x3f) | 0x80;
  const s = h.map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// Who visits: browsers (weights are shares of visitors) and countries (geo-demo.json).

const BROWSERS = [
  { name: 'chrome_windows', w: 30, res: [1920, 1080], vp: [1536, 754],
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36' },
  { name: 'safari_macos', w: 12, res: [2560, 1600], vp: [1440, 789],
    ua: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15' },
  { name: 'firefox_linux', w: 6, res: [1920, 1080], vp: [1903, 969],
    ua: 'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0' },
  { name: 'edge_windows', w: 10, res: [1366, 768], vp: [1350, 625],
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67' },
  { name: 'iphone_safari', w: 20, res: [390, 844], vp: [390, 664],
    ua: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1' },
  { name: 'android_chrome', w: 15, res: [412, 915], vp: [412, 776],
    ua: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36' },
  { name: 'ipad_safari', w: 5, res: [820, 1180], vp: [820, 1106],
    ua: 'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1' },
  // A rendering crawler: runs the page's tracker, sees pages only, never pings or clicks.
  { name: 'googlebot', w: 2, bot: true, res: [1024, 1024], vp: [1024, 1024],
    ua: 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)' },
];

// Browser language, time zone and local Google domain per country (geo-demo.json keeps only
// what the demo MaxMind database needs).
const LOCALE = {
  FR: ['fr-FR', 'Europe/Paris', 'www.google.fr'], DE: ['de-DE', 'Europe/Berlin', 'www.google.de'],
  GB: ['en-GB', 'Europe/London', 'www.google.co.uk'], US: ['en-US', 'America/New_York', 'www.google.com'],
  JP: ['ja-JP', 'Asia/Tokyo', 'www.google.co.jp'], BR: ['pt-BR', 'America/Sao_Paulo', 'www.google.com.br'],
  IN: ['en-IN', 'Asia/Kolkata', 'www.google.co.in'], AU: ['en-AU', 'Australia/Sydney', 'www.google.com.au'],
};

// Private addresses a corporate or carrier proxy puts before the client's public one.
const PROXY_HOPS = ['10.12.0.7', '192.168.1.23', '172.16.4.2'];

function loadCountries() {
  const { countries } = JSON.parse(readFileSync(new URL('./geo-demo.json', import.meta.url), 'utf8'));
  for (const c of countries) {
    if (!LOCALE[c.iso_code]) throw new Error(`geo-demo.json: no LOCALE entry for ${c.iso_code}`);
    for (const ip of c.ips) if (!isPublicIPv4(ip)) throw new Error(`geo-demo.json: ${ip} is not public unicast`);
  }
  return countries;
}

// Rejects the IANA special-purpose, private, shared, documentation, multicast and reserved ranges.
function isPublicIPv4(ip) {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return false;
  const [a, b, c] = p;
  return !(a === 0 || a === 10 || a === 127 || a >= 224 || (a === 100 && b >= 64 && b < 128) ||
    (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) ||
    (a === 192 && b === 0 && (c === 0 || c === 2)) || (a === 192 && b === 88 && c === 99) ||
    (a === 198 && (b === 18 || b === 19)) || (a === 198 && b === 51 && c === 100) ||
    (a === 203 && b === 0 && c === 113));
}

// ---------------------------------------------------------------------------------------------
// The site: an outdoor shop with products, a blog, a cart and a checkout.

const PRODUCTS = [
  ['trail-runner-x2', 'Trail Runner X2', 129, 'trail running shoes'],
  ['summit-pro-jacket', 'Summit Pro Jacket', 249, 'waterproof hiking jacket'],
  ['ultralight-tent-2p', 'Ultralight Tent 2P', 399, 'ultralight tent'],
  ['merino-base-layer', 'Merino Base Layer', 79, 'merino base layer'],
  ['alpine-backpack-45l', 'Alpine Backpack 45L', 189, '45l hiking backpack'],
  ['carbon-trekking-poles', 'Carbon Trekking Poles', 99, 'trekking poles'],
].map(([slug, name, price, term]) => ({ type: 'product', path: `/products/${slug}`, title: `${name} | Acme Outdoor`, sku: slug, price, term }));
const POSTS = [
  ['how-to-choose-trail-running-shoes', 'How to choose trail running shoes', 'how to choose trail shoes'],
  ['layering-for-winter-hikes', 'Layering for winter hikes', 'layering winter hiking'],
  ['best-campsites-in-the-alps', 'The 10 best campsites in the Alps', 'best campsites alps'],
  ['weekend-trek-packing-list', 'Packing list for a weekend trek', 'weekend trek packing list'],
].map(([slug, title, term]) => ({ type: 'blog', path: `/blog/${slug}`, title: `${title} | Acme Journal`, term }));
const HOME = { type: 'home', path: '/', title: 'Acme Outdoor — Gear for every trail', term: 'acme outdoor' };
const CART = { type: 'cart', path: '/cart', title: 'Your cart | Acme Outdoor' };
const CHECKOUT = { type: 'checkout', path: '/checkout', title: 'Checkout | Acme Outdoor' };

// Where a visitor goes next from each kind of page.
const NEXT = {
  home: [{ w: 50, to: PRODUCTS }, { w: 30, to: POSTS }, { w: 10, to: [CART] }, { w: 10, to: [HOME] }],
  product: [{ w: 40, to: PRODUCTS }, { w: 30, to: [CART] }, { w: 15, to: POSTS }, { w: 15, to: [HOME] }],
  blog: [{ w: 30, to: POSTS }, { w: 50, to: PRODUCTS }, { w: 20, to: [HOME] }],
  cart: [{ w: 55, to: [CHECKOUT] }, { w: 30, to: PRODUCTS }, { w: 15, to: [HOME] }],
  checkout: [{ w: 50, to: [HOME] }, { w: 50, to: PRODUCTS }],
};

const q = (s) => encodeURIComponent(s).replace(/%20/g, '+');

// How a session starts: landing page, its query string (campaign parameters) and the referrer.
const SOURCES = [
  { w: 30, name: 'google', entry: (rng, v) => {
    const page = pick(rng, [...PRODUCTS, ...PRODUCTS, ...POSTS, HOME]);
    return { page, query: '', refr: `https://${v.locale[2]}/search?q=${q(page.term)}` };
  } },
  { w: 6, name: 'bing', entry: (rng) => {
    const page = pick(rng, [...PRODUCTS, ...POSTS]);
    return { page, query: '', refr: `https://www.bing.com/search?q=${q(page.term)}&form=QBLH` };
  } },
  { w: 12, name: 'social', entry: (rng) => ({
    page: pick(rng, [...POSTS, ...POSTS, ...PRODUCTS]), query: '',
    refr: pick(rng, ['https://www.facebook.com/', 'https://l.facebook.com/', 'https://t.co/a1B2c3D4e5', 'https://twitter.com/']),
  }) },
  { w: 8, name: 'newsletter', entry: (rng) => ({
    page: pick(rng, [...PRODUCTS, ...POSTS]),
    query: `?utm_source=newsletter&utm_medium=email&utm_campaign=${pick(rng, ['spring_sale_2026', 'weekly_digest'])}&utm_content=${pick(rng, ['hero_button', 'footer_link'])}`,
    refr: chance(rng, 0.3) ? 'https://mail.google.com/' : '', // most mail clients send no referrer
  }) },
  { w: 10, name: 'paid', entry: (rng) => {
    const page = pick(rng, PRODUCTS);
    const gclid = `Cj0KCQjw${uuid(rng).replace(/-/g, '').slice(0, 20)}`;
    return {
      page, refr: 'https://www.google.com/',
      query: `?utm_source=google&utm_medium=cpc&utm_campaign=summer_gear&utm_term=${q(page.term)}&gclid=${gclid}`,
    };
  } },
  { w: 34, name: 'direct', entry: (rng) => ({ page: chance(rng, 0.7) ? HOME : pick(rng, [...PRODUCTS, CART]), query: '', refr: '' }) },
];
const DIRECT = SOURCES.find((s) => s.name === 'direct');

// ---------------------------------------------------------------------------------------------
// Visitors and their visits (a visit = 1-3 sessions; a returning visitor plays another visit).

function makeVisitor(i, seed, countries) {
  const rng = prng((Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0);
  const browser = weighted(rng, BROWSERS);
  const country = pick(rng, countries);
  const ip = pick(rng, country.ips);
  const v = {
    n: i, rng, browser, country, locale: LOCALE[country.iso_code],
    duid: uuid(rng), sessionIndex: 0, base64: chance(rng, 0.2),
    // Request headers the emitter sends; Referer (the page) and Cookie change as the visitor browses.
    headers: {
      'User-Agent': browser.ua,
      'X-Forwarded-For': chance(rng, 0.1) ? `${pick(rng, PROXY_HOPS)}, ${ip}` : ip,
      'Accept-Language': `${LOCALE[country.iso_code][0]},${LOCALE[country.iso_code][0].slice(0, 2)};q=0.9`,
    },
    ip, idle: Promise.resolve(), tracker: null, current: null,
  };
  return v;
}

function planVisit(v) {
  const rng = v.rng;
  const hits = [];
  const sessions = v.browser.bot ? 1 : weighted(rng, [{ w: 70, n: 1 }, { w: 22, n: 2 }, { w: 8, n: 3 }]).n;
  for (let s = 0; s < sessions; s++) {
    const sid = uuid(rng);
    const vid = ++v.sessionIndex;
    const source = v.browser.bot ? DIRECT : weighted(rng, SOURCES);
    let { page, query, refr } = source.entry(rng, v);
    // Entry page + 1-8 more page views, short sessions being the most common.
    const pages = 2 + Math.floor(8 * rng() ** 5);
    let checkoutStep = 0;
    for (let p = 0; p < pages; p++) {
      const url = SITE + page.path + query;
      const base = { sid, vid, source: p === 0 ? source.name : 'internal', url, title: page.title, refr, pvId: uuid(rng) };
      hits.push({ ...base, e: 'pv' });
      if (!v.browser.bot) {
        // Page pings while the visitor reads and scrolls (offsets grow), events in between.
        const pings = weighted(rng, [{ w: 45, n: 0 }, { w: 30, n: 1 }, { w: 17, n: 2 }, { w: 8, n: 3 }]).n;
        const events = pageEvents(rng, page, () => ++checkoutStep);
        let y = 0;
        for (let k = 0; k < Math.max(pings, events.length); k++) {
          if (k < events.length) hits.push({ ...base, ...events[k] });
          if (k < pings) {
            const miny = y;
            y += int(rng, 200, 1200);
            hits.push({ ...base, e: 'pp', pp: { minXOffset: 0, maxXOffset: chance(rng, 0.1) ? 40 : 0, minYOffset: miny, maxYOffset: y } });
          }
        }
      }
      refr = url; // internal navigation: the previous page is the referrer
      query = '';
      page = pick(rng, weighted(rng, NEXT[page.type]).to);
    }
  }
  return hits;
}

// Interactions on a page: structured events and self-describing events.
function pageEvents(rng, page, nextCheckoutStep) {
  const out = [];
  const se = (category, action, label, property, value) => ({ e: 'se', se: { category, action, label, property, value } });
  const ue = (schema, data) => ({ e: 'ue', ue: { schema, data } });
  if (page.type === 'product' && chance(rng, 0.35)) {
    out.push(se('ecommerce', 'add-to-cart', page.sku, `size-${pick(rng, ['S', 'M', 'L', '42', '44'])}`, page.price));
  }
  if (page.type === 'blog' && chance(rng, 0.3)) {
    out.push(se('video', 'play', page.title.split(' | ')[0], page.path, int(rng, 0, 30)));
    if (chance(rng, 0.5)) out.push(se('video', 'complete', page.title.split(' | ')[0], page.path, int(rng, 60, 240)));
  }
  if (page.type === 'blog' && chance(rng, 0.2)) {
    out.push(ue(LINK_CLICK, {
      targetUrl: pick(rng, ['https://www.komoot.com/', 'https://www.alltrails.com/', `${SITE}/products/trail-runner-x2`]),
      elementId: 'article-link', elementClasses: ['inline-link'], elementContent: 'read more',
    }));
  }
  if (page.type === 'cart' && chance(rng, 0.3)) {
    out.push(ue(LINK_CLICK, { targetUrl: `${SITE}/checkout`, elementId: 'checkout-button', elementClasses: ['btn', 'btn-primary'], elementContent: 'Checkout' }));
  }
  if (page.type === 'checkout') {
    for (const name of ['shipping', 'payment', 'review']) {
      out.push(ue(CHECKOUT_STEP, { step: nextCheckoutStep(), name, delivery: pick(rng, ['standard', 'express', 'pickup']) }));
      if (!chance(rng, 0.7)) break; // drop-off through the funnel
    }
  }
  if (chance(rng, 0.04)) out.push(se('newsletter', 'signup', 'footer-form', page.type));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sending: one tracker per visitor (its real emitter), with a keep-alive HTTP agent as transport.

const GIF = Buffer.from('GIF8');
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

function makeTracker(v, opts, agent, onDone) {
  // customFetch: the emitter builds the Request (URL, headers); we send it with node:http (much
  // cheaper than fetch per hit), check 200 + image, remember the sp cookie like a browser, and
  // hand the emitter a minimal response (it only reads ok/status/statusText/text()).
  const customFetch = (req) => new Promise((resolve, reject) => {
    const hit = v.current;
    const headers = {};
    for (const [k, val] of req.headers) headers[k] = val;
    hit.sent_ms = Date.now();
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      reject(err);
      const msg = err.name === 'AbortError' ? `no answer within ${opts.timeoutMs} ms (the emitter aborted it)` : err.message;
      setImmediate(onDone, v, hit, msg || String(err));
    };
    const r = http.get({ host: opts.host, port: opts.port, path: req.url.slice(opts.endpoint.length), headers, agent, signal: req.signal }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', fail);
      res.on('end', () => {
        if (settled) return;
        settled = true;
        const body = Buffer.concat(chunks);
        const image = /^image\//i.test(res.headers['content-type'] || '') &&
          (body.subarray(0, 4).equals(GIF) || body.subarray(0, 4).equals(PNG));
        const cookie = (res.headers['set-cookie'] || []).find((c) => c.startsWith('sp='));
        if (cookie && !v.headers.Cookie) v.headers.Cookie = cookie.split(';')[0];
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        resolve({ ok, status: res.statusCode, statusText: res.statusMessage, text: async () => '' });
        // Complete the hit once the emitter has finished with it (its queue is settled by then).
        setImmediate(onDone, v, hit, res.statusCode === 200 && image ? null
          : `status ${res.statusCode}, content-type ${res.headers['content-type']}, ${body.length} body bytes`);
      });
    });
    r.on('error', fail);
  });
  const t = newTracker(
    { namespace: NAMESPACE, appId: APP_ID, encodeBase64: v.base64 },
    { endpoint: opts.endpoint, eventMethod: 'get', bufferSize: 1, retryFailedRequests: false,
      connectionTimeout: opts.timeoutMs, customHeaders: v.headers, customFetch },
  );
  const b = v.browser;
  t.setPlatform('web'); // as the JavaScript tracker
  t.setUseragent(b.ua);
  t.setDomainUserId(v.duid);
  t.setLang(v.locale[0]);
  t.setTimezone(v.locale[1]);
  t.setScreenResolution(b.res[0], b.res[1]);
  t.setViewport(b.vp[0], b.vp[1]);
  t.setColorDepth(24);
  return t;
}

// Sends one hit and resolves when its request has finished (ok or not).
function sendHit(v, hit) {
  const t = v.tracker;
  t.setSessionId(hit.sid);
  t.setSessionIndex(hit.vid);
  v.headers.Referer = hit.url; // a browser sends the page it is on with the tracker's request
  const done = new Promise((resolve) => { hit.resolve = resolve; });
  v.current = hit;
  const page = { pageUrl: hit.url, pageTitle: hit.title, referrer: hit.refr || undefined };
  const pb = hit.e === 'pv' ? buildPageView(page)
    : hit.e === 'pp' ? buildPagePing({ ...page, ...hit.pp })
    : hit.e === 'se' ? buildStructEvent(hit.se)
    : buildSelfDescribingEvent({ event: hit.ue });
  if (hit.e === 'se' || hit.e === 'ue') { // the JavaScript tracker sends the page on every event
    pb.add('url', hit.url);
    pb.add('page', hit.title);
    if (hit.refr) pb.add('refr', hit.refr);
  }
  // Like the JavaScript tracker, every event on a page carries the page view id.
  const payload = t.track(pb, [{ schema: WEB_PAGE, data: { id: hit.pvId } }]);
  hit.eid = payload?.eid;
  if (!hit.eid) throw new Error(`track() returned no payload for ${JSON.stringify(hit)}`);
  return done;
}

// Paces hits at a steady rate: hit k is due at start + k/rate; a late hit goes at once.
function makePacer(rate) {
  const p = { start: 0, slot: 0, maxLagMs: 0 };
  p.acquire = async () => {
    if (!rate) return;
    const due = p.start + (p.slot++ * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    p.maxLagMs = Math.max(p.maxLagMs, performance.now() - due);
  };
  return p;
}

// ---------------------------------------------------------------------------------------------
// Main: workers (one active visitor each) take visits in a fixed order until the budget is spent.

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const countries = loadCountries();
  const visitors = Array.from({ length: opts.visitors }, (_, i) => makeVisitor(i, opts.seed, countries));
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const out = opts.out ? createWriteStream(opts.out) : null;
  const st = {
    sent: 0, ok: 0, failed: 0, byType: {}, bySchema: {}, bySource: {}, errors: [], latencies: [],
    visitors: new Set(), sessions: new Set(), countries: {}, browsers: {}, base64: 0,
  };

  let lastDoneMs = Date.now();
  const onDone = (v, hit, err) => {
    hit.resolve(err);
    lastDoneMs = Date.now();
    const latency = Date.now() - hit.sent_ms;
    if (err) {
      st.failed++;
      if (st.errors.length < 10) st.errors.push(`${hit.e} eid=${hit.eid}: ${err}`);
    } else st.ok++;
    st.latencies.push(latency);
    st.byType[hit.e] = (st.byType[hit.e] || 0) + 1;
    if (hit.ue) st.bySchema[hit.ue.schema] = (st.bySchema[hit.ue.schema] || 0) + 1;
    if (hit.e === 'pv' && hit.source !== 'internal') st.bySource[hit.source] = (st.bySource[hit.source] || 0) + 1;
    if (!st.visitors.has(v.n)) {
      st.visitors.add(v.n);
      st.countries[v.country.iso_code] = (st.countries[v.country.iso_code] || 0) + 1;
      st.browsers[v.browser.name] = (st.browsers[v.browser.name] || 0) + 1;
      if (v.base64) st.base64++;
    }
    st.sessions.add(hit.sid);
    out?.write(JSON.stringify({
      eid: hit.eid, e: hit.e, sent_ms: hit.sent_ms, ok: !err, visitor: v.duid, session: hit.sid,
      session_index: hit.vid, page_view_id: hit.pvId, country: v.country.iso_code, ip: v.ip,
      browser: v.browser.name, base64: v.base64, url: hit.url, refr: hit.refr || null,
      se_ca: hit.se?.category ?? null, se_ac: hit.se?.action ?? null, schema: hit.ue?.schema ?? null,
    }) + '\n');
  };

  const pacer = makePacer(opts.rate);
  let reserved = 0;
  let nextVisitor = 0;
  let deadline = Infinity;
  const timeUp = () => performance.now() >= deadline;

  async function worker() {
    while (!timeUp() && (opts.hits === undefined || reserved < opts.hits)) {
      // Take the next visit synchronously (fixed order => deterministic plan and truncation).
      const v = visitors[nextVisitor++ % visitors.length];
      let hits = planVisit(v);
      if (opts.hits !== undefined) hits = hits.slice(0, opts.hits - reserved);
      reserved += hits.length;
      const previous = v.idle; // a returning visitor waits for its previous visit to finish
      let release;
      v.idle = new Promise((r) => { release = r; });
      await previous;
      v.tracker ??= makeTracker(v, opts, agent, onDone);
      for (const hit of hits) {
        if (timeUp()) break;
        await pacer.acquire();
        st.sent++;
        const err = await sendHit(v, hit);
        // After a network error the emitter keeps the event queued for a retry: start afresh.
        if (err) v.tracker = makeTracker(v, opts, agent, onDone);
      }
      release();
    }
  }

  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  pacer.start = t0;
  if (opts.durationS !== undefined && opts.rate === undefined) deadline = t0 + opts.durationS * 1000;
  let warned = false;
  let lastSent = 0;
  const ticker = setInterval(() => {
    const el = (performance.now() - t0) / 1000;
    const behind = opts.rate ? st.sent - Math.min(opts.hits, el * opts.rate) : 0;
    if (opts.rate && behind < -opts.rate && !warned) {
      warned = true;
      console.error(`visitors.mjs: WARNING: cannot keep up with --rate ${opts.rate}: ${Math.round(-behind)} hits behind after ${el.toFixed(1)} s`);
    }
    // The emitter times requests out itself; a hit that never completes would be a bug here.
    if (st.sent > st.ok + st.failed && Date.now() - lastDoneMs > opts.timeoutMs + 5000) {
      console.error(`visitors.mjs: STUCK: ${st.sent - st.ok - st.failed} hit(s) without an answer for ` +
        `${((Date.now() - lastDoneMs) / 1000).toFixed(0)} s (${st.ok} ok, ${st.failed} failed so far)`);
      process.exit(1);
    }
    if (opts.progress) {
      console.error(`[${el.toFixed(1)} s] sent ${st.sent} ok ${st.ok} failed ${st.failed} ` +
        `in flight ${st.sent - st.ok - st.failed} last-second ${st.sent - lastSent} hits/s` +
        (opts.rate ? ` (target ${opts.rate})` : ''));
    }
    lastSent = st.sent;
  }, 1000);

  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  clearInterval(ticker);
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  if (out) { out.end(); await once(out, 'finish'); }

  // Summary.
  const rate = st.sent / elapsedS;
  const lat = st.latencies.sort((a, b) => a - b);
  const pct = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0;
  const fmt = (o) => Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
  const slow = opts.rate && rate < 0.97 * opts.rate;
  const lines = [
    `visitors.mjs: seed ${opts.seed}: ${st.sent} hits to ${opts.endpoint}, ${st.ok} ok, ${st.failed} failed`,
    `  events: ${fmt(st.byType)}`,
    `  self-describing: ${fmt(st.bySchema) || 'none'}`,
    `  session sources: ${fmt(st.bySource)}`,
    `  ${st.visitors.size} visitors (${st.base64} base64), ${st.sessions.size} sessions`,
    `  countries (visitors): ${fmt(st.countries)}`,
    `  browsers (visitors): ${fmt(st.browsers)}`,
    `  elapsed ${elapsedS.toFixed(2)} s, achieved ${rate.toFixed(0)} hits/s` +
      (opts.rate ? ` (target ${opts.rate}, max lag ${pacer.maxLagMs.toFixed(0)} ms)` : ` (concurrency ${opts.concurrency})`),
    `  latency ms p50 ${pct(0.5)} p99 ${pct(0.99)} max ${pct(1)}; client CPU ` +
      `${((cpu.user + cpu.system) / 1e6).toFixed(2)} s (${((cpu.user + cpu.system) / 1e4 / elapsedS).toFixed(0)}% of a core)`,
  ];
  if (slow) lines.push(`  WARNING: could not keep up: achieved ${rate.toFixed(0)} of ${opts.rate} hits/s`);
  else if (opts.rate && pacer.maxLagMs > 1000) {
    lines.push(`  WARNING: not steady: fell up to ${(pacer.maxLagMs / 1000).toFixed(1)} s behind schedule, then caught up in bursts`);
  }
  if (opts.out) lines.push(`  wrote ${opts.out}`);
  for (const e of st.errors) lines.push(`  FAIL ${e}`);
  console.error(lines.join('\n'));
  return st.failed > 0 || st.sent !== st.ok + st.failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('visitors.mjs: crashed:', e?.stack || e);
    process.exit(1);
  },
);
