#!/usr/bin/env node
// plowline acceptance-test client: sends every Snowplow event type through the real
// @snowplow/node-tracker (its real emitter, GET, with and without base64) to a collector
// endpoint, waits for every request to finish, and writes what was sent to an NDJSON file.
//
//   node send.mjs --endpoint http://127.0.0.1:PORT --out expected.ndjson [--base64 true|false|both]
//                 [--only case1,case2] [--timeout-ms 15000] [--list]
//
// Output: one JSON object per hit (per HTTP request), in send order:
//   {"case": "...", "base64": bool, "params": {...}, "eid": "...", "request_uri": "/i?...",
//    "headers": {"user-agent": "...", "cookie": "..." | null}, "profile": "..."}
// `params` is the query of the exact URL the emitter handed to fetch, decoded with Node's
// URLSearchParams (and cross-checked against a second, hand-written decoder and against the
// tracker's own payload seen by an afterTrack plugin). Every value is a string exactly as
// sent; co/cx/ue_pr/ue_px are the raw strings (plain JSON or unpadded URL-safe base64).
// `stm` is included: the emitter adds it to the GET URL (it is not in the tracker payload).
// `eid` (a fresh UUID per event) is the reliable key for matching log lines to expectations;
// every case also carries its name as a marker (page / se_la / tr_id / ti_sk / ue `marker`).
//
// Exit status: 0 when every hit got 200 with an image body and every check passed; 1 otherwise
// (nothing is written to --out then); 2 on bad usage.

import { deepStrictEqual } from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import {
  newTracker,
  version as trackerVersion,
  buildPageView,
  buildPagePing,
  buildStructEvent,
  buildSelfDescribingEvent,
  buildEcommerceTransaction,
  buildEcommerceTransactionItem,
  buildLinkClick,
  buildScreenView,
  buildSiteSearch,
} from '@snowplow/node-tracker';

const APP_ID = 'plowline-test';
const NAMESPACE = 'plowline';
const UNSTRUCT_SCHEMA = 'iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0';
const CONTEXTS_SCHEMA = 'iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0';

// ---------------------------------------------------------------------------------------------
// Arguments

function usage(msg) {
  if (msg) console.error(`send.mjs: ${msg}`);
  console.error(
    'usage: node send.mjs --endpoint http://127.0.0.1:PORT --out expected.ndjson ' +
      '[--base64 true|false|both] [--only case1,case2] [--timeout-ms N] [--list]',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { base64: 'both', timeoutMs: 15000, only: null, list: false };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '--endpoint': opts.endpoint = next(); break;
      case '--out': opts.out = next(); break;
      case '--base64': opts.base64 = next(); break;
      case '--only': opts.only = next().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--timeout-ms': opts.timeoutMs = Number(next()); break;
      case '--list': opts.list = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${arg}`);
    }
  }
  if (opts.list) return opts;
  if (!opts.endpoint) usage('--endpoint is required');
  if (!opts.out) usage('--out is required');
  if (!['true', 'false', 'both'].includes(opts.base64)) usage('--base64 must be true, false or both');
  if (!(opts.timeoutMs > 0)) usage('--timeout-ms must be a positive number');
  let ep;
  try {
    ep = new URL(opts.endpoint);
  } catch {
    usage(`bad --endpoint ${opts.endpoint}`);
  }
  if (ep.protocol !== 'http:' && ep.protocol !== 'https:') usage('--endpoint must be http(s)://host:port');
  if (ep.pathname !== '/' || ep.search || ep.hash) usage('--endpoint must not have a path (the tracker appends /i)');
  opts.endpoint = `${ep.protocol}//${ep.host}`;
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Test data

// ASCII specials that must survive URL encoding, nginx logging and our parser.
const SPECIAL =
  `quote" apos' tab\there nl\nhere crlf\r\nhere amp& eq= plus+ pct% pct20%20 pctzz%zz hash# ` +
  `qm? slash/ bslash\\ semi; comma, lt< gt> braces{} brackets[] pipe| caret^ backtick\` tilde~ ` +
  `excl! star* parens() at@ dollar$ two  spaces end`;
// Non-ASCII text: accents, CJK, RTL, emoji (incl. ZWJ sequences and flags), combining marks, odd spaces.
const UNICODE =
  'é à ç ñ ü ß Ω — “curly” ‘single’ « guillemets » 中文 日本語 한국어 العربية עברית ' +
  '😀 🎉 👩‍👩‍👧 🇫🇷 e\u0301 nbsp\u00a0x zwsp\u200bx';

const BROWSER_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

// Tracker "profiles": one tracker instance (and emitter) per profile and base64 mode.
const PROFILES = {
  // A plain tracker: default payload pairs only, realistic User-Agent header, no cookie.
  default: {
    headers: { 'User-Agent': BROWSER_UA },
  },
  // Identity setters and a Cookie header.
  identified: {
    headers: {
      'User-Agent': BROWSER_UA,
      Cookie: 'sp=8e1e1d6c-5f0a-4c4e-9d6a-3b9f4d1c2a10; _sp_id.1fff=abc.1700000000.3.1700000100.1699990000; theme=dark',
    },
    setup(t) {
      t.setUserId('usér-42 "quoted" & = + % 中文');
      t.setDomainUserId('4b0dfa75-8ef6-4e2b-a2e8-3c7b5d0e9f11');
      t.setNetworkUserId('8e1e1d6c-5f0a-4c4e-9d6a-3b9f4d1c2a10');
      t.setSessionId('d5c0d7b2-6a7e-4b8e-8f3e-2a1c9b7e6d54');
      t.setSessionIndex(3);
      t.setIpAddress('203.0.113.7');
      t.setUseragent(BROWSER_UA);
      t.setLang('fr-FR');
      t.setTimezone('Europe/Paris');
      t.setScreenResolution(1920, 1080);
      t.setViewport(1280, 720);
      t.setColorDepth(24);
    },
  },
  // Headers nginx must escape in its log ("\x22", "\x5C").
  odd_headers: {
    headers: {
      'User-Agent': 'Mozilla/5.0 (compatible; "quoted" agent\\backslash; +https://example.com/bot?a=1&b=2)',
      Cookie: 'sp="quoted-value"; path_like=/a/b; eq=a=b; pct=100%25',
    },
  },
};

const sd = (schema, data) => ({ schema, data });

// Each case: name, profile, build() -> { pb, context?, timestamp? },
// expect: { param: value } checked against the decoded query (values compared as strings),
// ue: expected inner self-describing JSON, contexts: expected context entities.
const CASES = [
  {
    name: 'pv_basic',
    build: () => ({
      pb: buildPageView({
        pageUrl: 'https://shop.example.com/products?id=42&ref=home',
        pageTitle: 'pv_basic',
        referrer: 'https://www.google.com/search?q=plowline',
      }),
    }),
    expect: { e: 'pv', page: 'pv_basic', url: 'https://shop.example.com/products?id=42&ref=home' },
  },
  {
    name: 'pv_unicode',
    build: () => ({
      pb: buildPageView({
        pageUrl: 'https://example.com/café/中文/😀?q=été&emoji=🎉#ancre',
        pageTitle: `pv_unicode ${UNICODE}`,
        referrer: 'https://例子.测试/路径?q=中文',
      }),
    }),
    expect: {
      e: 'pv',
      page: `pv_unicode ${UNICODE}`,
      url: 'https://example.com/café/中文/😀?q=été&emoji=🎉#ancre',
      refr: 'https://例子.测试/路径?q=中文',
    },
  },
  {
    name: 'pv_special_chars',
    build: () => ({
      pb: buildPageView({
        pageUrl: `https://example.com/a b/c?x=1&y=a+b&z=100%&q="quoted"&s='single'&t=\ttab#frag`,
        pageTitle: `pv_special_chars ${SPECIAL}`,
        referrer: 'https://ref.example.org/?a=1&b=2+3&c=%20&d=%zz',
      }),
    }),
    expect: {
      e: 'pv',
      page: `pv_special_chars ${SPECIAL}`,
      url: `https://example.com/a b/c?x=1&y=a+b&z=100%&q="quoted"&s='single'&t=\ttab#frag`,
      refr: 'https://ref.example.org/?a=1&b=2+3&c=%20&d=%zz',
    },
  },
  {
    name: 'pp_basic',
    build: () => ({
      pb: buildPagePing({
        pageUrl: 'https://shop.example.com/products?id=42',
        pageTitle: 'pp_basic',
        minXOffset: 10,
        maxXOffset: 1280,
        minYOffset: 100,
        maxYOffset: 2400,
      }),
    }),
    expect: { e: 'pp', page: 'pp_basic', pp_mix: '10', pp_max: '1280', pp_miy: '100', pp_may: '2400' },
  },
  {
    // The tracker drops offsets that are 0 (`if (minXOffset && ...)`): only pp_may is sent.
    name: 'pp_zero_offsets',
    build: () => ({
      pb: buildPagePing({
        pageUrl: 'https://shop.example.com/',
        pageTitle: 'pp_zero_offsets',
        minXOffset: 0,
        maxXOffset: 0,
        minYOffset: 0,
        maxYOffset: 350,
      }),
    }),
    expect: { e: 'pp', page: 'pp_zero_offsets', pp_may: '350' },
    absent: ['pp_mix', 'pp_max', 'pp_miy'],
  },
  {
    name: 'se_basic',
    build: () => ({
      pb: buildStructEvent({ category: 'shop', action: 'add-to-basket', label: 'se_basic', property: 'sku-123', value: 42 }),
    }),
    expect: { e: 'se', se_ca: 'shop', se_ac: 'add-to-basket', se_la: 'se_basic', se_pr: 'sku-123', se_va: '42' },
  },
  {
    // se_va 0 is kept (the tracker only drops null/undefined); se_pr omitted.
    name: 'se_minimal',
    build: () => ({ pb: buildStructEvent({ category: 'c', action: 'a', label: 'se_minimal', value: 0 }) }),
    expect: { e: 'se', se_ca: 'c', se_ac: 'a', se_la: 'se_minimal', se_va: '0' },
    absent: ['se_pr'],
  },
  {
    name: 'se_special_chars',
    build: () => ({
      pb: buildStructEvent({
        category: `cat ${SPECIAL}`,
        action: `act " ' & = + % \\ ;`,
        label: `se_special_chars ${SPECIAL}`,
        property: 'prop\twith\ttabs\nand\nnewlines\r\nand CRLF',
        value: 1.5,
      }),
    }),
    expect: {
      e: 'se',
      se_ca: `cat ${SPECIAL}`,
      se_ac: `act " ' & = + % \\ ;`,
      se_la: `se_special_chars ${SPECIAL}`,
      se_pr: 'prop\twith\ttabs\nand\nnewlines\r\nand CRLF',
      se_va: '1.5',
    },
  },
  {
    name: 'se_unicode',
    build: () => ({
      pb: buildStructEvent({
        category: 'Catégorie 中文',
        action: 'émoji 😀',
        label: `se_unicode ${UNICODE}`,
        property: '🎉👩‍👩‍👧🇫🇷',
        value: -0.25,
      }),
    }),
    expect: {
      e: 'se',
      se_ca: 'Catégorie 中文',
      se_ac: 'émoji 😀',
      se_la: `se_unicode ${UNICODE}`,
      se_pr: '🎉👩‍👩‍👧🇫🇷',
      se_va: '-0.25',
    },
  },
  {
    // C0/C1 controls, ESC, DEL, U+2028/2029 (all percent-encoded on the wire).
    name: 'se_control_chars',
    build: () => ({
      pb: buildStructEvent({
        category: 'ctl',
        action: 'ctl',
        label: 'se_control_chars \u0001\u0007\u001b[0m\u001f\u007f\u0085\u2028\u2029 end',
      }),
    }),
    expect: { se_la: 'se_control_chars \u0001\u0007\u001b[0m\u001f\u007f\u0085\u2028\u2029 end' },
  },
  {
    // A NUL byte inside a value (%00 on the wire). Kept separate so it can be triaged alone.
    name: 'se_nul_char',
    build: () => ({ pb: buildStructEvent({ category: 'ctl', action: 'nul', label: 'se_nul_char a\u0000b' }) }),
    expect: { se_la: 'se_nul_char a\u0000b' },
  },
  {
    name: 'ue_basic',
    build: () => ({
      pb: buildSelfDescribingEvent({
        event: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', {
          marker: 'ue_basic',
          n: 1,
          f: 2.5,
          ok: true,
          nil: null,
          nested: { a: [1, 2, 3], b: { c: 'd' } },
        }),
      }),
    }),
    expect: { e: 'ue' },
    ue: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', {
      marker: 'ue_basic',
      n: 1,
      f: 2.5,
      ok: true,
      nil: null,
      nested: { a: [1, 2, 3], b: { c: 'd' } },
    }),
  },
  (() => {
    const data = {
      marker: 'ue_special_chars',
      text: SPECIAL,
      unicode: UNICODE,
      quote: '"',
      apos: "'",
      tab: '\t',
      nl: '\n',
      amp: '&',
      eq: '=',
      plus: '+',
      pct: '%',
      pct20: '%20',
      bs: '\\',
      slash: '/',
      ctl: '\u0001\u001f\u007f',
      'key with "quotes" & = + % \t': 'v',
    };
    return {
      name: 'ue_special_chars',
      build: () => ({ pb: buildSelfDescribingEvent({ event: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data) }) }),
      expect: { e: 'ue' },
      ue: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data),
    };
  })(),
  (() => {
    const data = { marker: 'ue_unicode', 中文键: '中文值', émoji: '😀🎉', rtl: 'العربية עברית', zwj: '👩‍👩‍👧', flag: '🇫🇷' };
    return {
      name: 'ue_unicode',
      build: () => ({ pb: buildSelfDescribingEvent({ event: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data) }) }),
      expect: { e: 'ue' },
      ue: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data),
    };
  })(),
  {
    name: 'ue_link_click',
    build: () => ({
      pb: buildLinkClick({
        targetUrl: 'https://example.com/下载?file=a&b=c+d',
        elementId: 'dl-link',
        elementClasses: ['btn', 'btn "primary"'],
        elementTarget: '_blank',
        elementContent: 'ue_link_click Télécharger 📄',
      }),
    }),
    expect: { e: 'ue' },
    ue: sd('iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1', {
      targetUrl: 'https://example.com/下载?file=a&b=c+d',
      elementId: 'dl-link',
      elementClasses: ['btn', 'btn "primary"'],
      elementTarget: '_blank',
      elementContent: 'ue_link_click Télécharger 📄',
    }),
  },
  {
    name: 'ue_screen_view',
    build: () => ({ pb: buildScreenView({ name: 'ue_screen_view écran', id: '0f4c7a1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b' }) }),
    expect: { e: 'ue' },
    ue: sd('iglu:com.snowplowanalytics.snowplow/screen_view/jsonschema/1-0-0', {
      name: 'ue_screen_view écran',
      id: '0f4c7a1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b',
    }),
  },
  {
    name: 'ue_site_search',
    build: () => ({
      pb: buildSiteSearch({
        terms: ['ue_site_search', 'café', 'a&b=c+d%'],
        filters: { lang: 'fr', inStock: true },
        totalResults: 10,
        pageResults: 5,
      }),
    }),
    expect: { e: 'ue' },
    ue: sd('iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0', {
      terms: ['ue_site_search', 'café', 'a&b=c+d%'],
      filters: { lang: 'fr', inStock: true },
      totalResults: 10,
      pageResults: 5,
    }),
  },
  (() => {
    // A long line: ~3 KB of JSON (URL stays under nginx's default 8 KB request-line buffer).
    const items = [];
    for (let i = 0; i < 30; i++) items.push({ i, sku: `SKU-${i}`, name: `Produit n°${i} "x" & y`, price: i + 0.99 });
    const data = { marker: 'ue_large', items };
    return {
      name: 'ue_large',
      build: () => ({ pb: buildSelfDescribingEvent({ event: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data) }) }),
      expect: { e: 'ue' },
      ue: sd('iglu:com.plowline/test_event/jsonschema/1-0-0', data),
    };
  })(),
  (() => {
    const contexts = [
      sd('iglu:com.plowline/page_context/jsonschema/1-0-0', {
        marker: 'ctx_page_view',
        section: 'Café & Bar',
        tags: ['a=b', 'c+d', '50%', "it's", '"q"'],
      }),
      sd('iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0', { id: '6a1c0c2e-1f5e-4b9a-9c1e-7f2d3b4a5c6d' }),
    ];
    return {
      name: 'ctx_page_view',
      build: () => ({
        pb: buildPageView({ pageUrl: 'https://example.com/menu', pageTitle: 'ctx_page_view' }),
        context: contexts,
      }),
      expect: { e: 'pv', page: 'ctx_page_view' },
      contexts,
    };
  })(),
  (() => {
    const contexts = [
      sd('iglu:com.plowline/test_context/jsonschema/1-0-0', { marker: 'ctx_struct_special', text: SPECIAL, unicode: UNICODE }),
    ];
    return {
      name: 'ctx_struct_special',
      build: () => ({
        pb: buildStructEvent({ category: 'ctx', action: 'special', label: 'ctx_struct_special' }),
        context: contexts,
      }),
      expect: { e: 'se', se_la: 'ctx_struct_special' },
      contexts,
    };
  })(),
  (() => {
    const ue = sd('iglu:com.plowline/test_event/jsonschema/1-0-0', { marker: 'ctx_self_describing', v: 'é & =' });
    const contexts = [
      sd('iglu:com.plowline/test_context/jsonschema/1-0-0', { marker: 'ctx_self_describing', n: 1 }),
      sd('iglu:com.plowline/test_context/jsonschema/1-0-0', { marker: 'ctx_self_describing', n: 2, s: '中文 😀' }),
    ];
    return {
      name: 'ctx_self_describing',
      build: () => ({ pb: buildSelfDescribingEvent({ event: ue }), context: contexts }),
      expect: { e: 'ue' },
      ue,
      contexts,
    };
  })(),
  {
    name: 'tr_transaction',
    build: () => ({
      pb: buildEcommerceTransaction({
        orderId: 'tr_transaction',
        total: 123.45,
        affiliation: 'Boutique "Élégance" & Co',
        tax: 20.58,
        shipping: 4.99,
        city: 'Zürich',
        state: 'ZH',
        country: 'Schweiz 🇨🇭',
        currency: 'CHF',
      }),
    }),
    expect: {
      e: 'tr',
      tr_id: 'tr_transaction',
      tr_tt: '123.45',
      tr_af: 'Boutique "Élégance" & Co',
      tr_tx: '20.58',
      tr_sh: '4.99',
      tr_ci: 'Zürich',
      tr_st: 'ZH',
      tr_co: 'Schweiz 🇨🇭',
      tr_cu: 'CHF',
    },
  },
  {
    name: 'ti_transaction_item',
    build: () => ({
      pb: buildEcommerceTransactionItem({
        orderId: 'tr_transaction',
        sku: 'ti_transaction_item',
        name: "T-shirt « été » 中文 😀\ttab 'single' \"double\" a+b=c&d 100%",
        category: 'Vêtements/Été',
        price: 19.9,
        quantity: 2,
        currency: 'CHF',
      }),
    }),
    expect: {
      e: 'ti',
      ti_id: 'tr_transaction',
      ti_sk: 'ti_transaction_item',
      ti_nm: "T-shirt « été » 中文 😀\ttab 'single' \"double\" a+b=c&d 100%",
      ti_ca: 'Vêtements/Été',
      ti_pr: '19.9',
      ti_qu: '2',
      ti_cu: 'CHF',
    },
  },
  {
    name: 'ttm_true_timestamp',
    build: () => ({
      pb: buildStructEvent({ category: 'time', action: 'ttm', label: 'ttm_true_timestamp' }),
      timestamp: { type: 'ttm', value: 1700000000123 },
    }),
    expect: { e: 'se', se_la: 'ttm_true_timestamp', ttm: '1700000000123' },
    absent: ['dtm'],
  },
  {
    name: 'dtm_custom_timestamp',
    build: () => ({
      pb: buildStructEvent({ category: 'time', action: 'dtm', label: 'dtm_custom_timestamp' }),
      timestamp: 1700000000456,
    }),
    expect: { e: 'se', se_la: 'dtm_custom_timestamp', dtm: '1700000000456' },
    absent: ['ttm'],
  },
  {
    name: 'pv_identified',
    profile: 'identified',
    build: () => ({ pb: buildPageView({ pageUrl: 'https://example.com/account', pageTitle: 'pv_identified' }) }),
    expect: {
      e: 'pv',
      page: 'pv_identified',
      uid: 'usér-42 "quoted" & = + % 中文',
      duid: '4b0dfa75-8ef6-4e2b-a2e8-3c7b5d0e9f11',
      nuid: '8e1e1d6c-5f0a-4c4e-9d6a-3b9f4d1c2a10',
      sid: 'd5c0d7b2-6a7e-4b8e-8f3e-2a1c9b7e6d54',
      vid: '3',
      ip: '203.0.113.7',
      ua: BROWSER_UA,
      lang: 'fr-FR',
      tz: 'Europe/Paris',
      res: '1920x1080',
      vp: '1280x720',
      cd: '24',
    },
  },
  (() => {
    const contexts = [sd('iglu:com.plowline/test_context/jsonschema/1-0-0', { marker: 'se_identified' })];
    return {
      name: 'se_identified',
      profile: 'identified',
      build: () => ({ pb: buildStructEvent({ category: 'id', action: 'click', label: 'se_identified', value: 7 }), context: contexts }),
      expect: { e: 'se', se_la: 'se_identified', uid: 'usér-42 "quoted" & = + % 中文', vid: '3' },
      contexts,
    };
  })(),
  {
    name: 'pv_odd_headers',
    profile: 'odd_headers',
    build: () => ({ pb: buildPageView({ pageUrl: 'https://example.com/bot', pageTitle: 'pv_odd_headers' }) }),
    expect: { e: 'pv', page: 'pv_odd_headers' },
  },
];

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Independent query decoder (not URLSearchParams): split on & and =, percent-decode.
function manualDecode(search) {
  const out = new Map();
  const q = search.startsWith('?') ? search.slice(1) : search;
  for (const part of q.split('&')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    const k = decodeURIComponent((i < 0 ? part : part.slice(0, i)).replace(/\+/g, ' '));
    const v = i < 0 ? '' : decodeURIComponent(part.slice(i + 1).replace(/\+/g, ' '));
    if (out.has(k)) throw new Error(`duplicate parameter ${k}`);
    out.set(k, v);
  }
  return Object.fromEntries(out);
}

function decodeJsonParam(params, base64, plainKey, b64Key) {
  const key = base64 ? b64Key : plainKey;
  const other = base64 ? plainKey : b64Key;
  if (other in params) throw new Error(`unexpected ${other} with base64=${base64}`);
  if (!(key in params)) return undefined;
  const raw = params[key];
  if (base64) {
    if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw new Error(`${key} is not unpadded URL-safe base64`);
    return JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  }
  return JSON.parse(raw);
}

const isImage = (ct, body) => {
  const magic = Buffer.from(body.subarray(0, 8)).toString('latin1');
  const looksLikeImage = magic.startsWith('GIF87a') || magic.startsWith('GIF89a') || magic.startsWith('\x89PNG');
  return /^image\//i.test(ct || '') && body.length > 0 && looksLikeImage;
};

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.list) {
    for (const c of CASES) console.log(c.name);
    return 0;
  }
  let cases = CASES;
  if (opts.only) {
    const unknown = opts.only.filter((n) => !CASES.some((c) => c.name === n));
    if (unknown.length) usage(`unknown case(s): ${unknown.join(', ')}`);
    cases = CASES.filter((c) => opts.only.includes(c.name));
  }
  const modes = opts.base64 === 'both' ? [false, true] : [opts.base64 === 'true'];

  const tracked = new Map(); // eid -> payload copy seen by afterTrack
  const requests = new Map(); // eid -> { url, headers, status, contentType, bodyLength, ok, error }
  const unmatched = []; // requests whose eid we cannot place
  const failures = [];
  const fatal = [];

  const trackers = new Map();
  function trackerFor(base64, profileName) {
    const key = `${base64}:${profileName}`;
    if (trackers.has(key)) return trackers.get(key);
    const profile = PROFILES[profileName];
    const customFetch = async (req, init) => {
      const u = new URL(req.url);
      const eid = u.searchParams.get('eid');
      const rec = {
        url: req.url,
        method: req.method,
        headers: { 'user-agent': req.headers.get('user-agent'), cookie: req.headers.get('cookie') },
        done: false,
      };
      if (eid && !requests.has(eid)) requests.set(eid, rec);
      else unmatched.push(rec);
      try {
        const res = await fetch(req, init);
        const body = new Uint8Array(await res.clone().arrayBuffer());
        rec.status = res.status;
        rec.contentType = res.headers.get('content-type');
        rec.bodyLength = body.length;
        rec.ok = res.status === 200 && isImage(rec.contentType, body);
        rec.done = true;
        return res;
      } catch (e) {
        rec.error = String(e?.cause?.message || e?.message || e);
        rec.done = true;
        fatal.push(`request for eid=${eid} failed: ${rec.error}`);
        throw e;
      }
    };
    const t = newTracker(
      { namespace: NAMESPACE, appId: APP_ID, encodeBase64: base64 },
      {
        endpoint: opts.endpoint,
        eventMethod: 'get',
        bufferSize: 1,
        retryFailedRequests: false,
        connectionTimeout: opts.timeoutMs,
        customHeaders: profile.headers,
        customFetch,
        onRequestFailure: (f) => fatal.push(`tracker reported failure: status=${f.status} ${f.message}`),
      },
    );
    t.addPlugin({
      plugin: {
        afterTrack: (payload) => {
          tracked.set(payload.eid, { ...payload });
        },
      },
    });
    profile.setup?.(t);
    trackers.set(key, t);
    return t;
  }

  const lines = [];
  let maxUrl = 0;
  for (const base64 of modes) {
    for (const c of cases) {
      const profileName = c.profile || 'default';
      const t = trackerFor(base64, profileName);
      const label = `${c.name} (base64=${base64})`;
      const { pb, context, timestamp } = c.build();
      const payload = t.track(pb, context, timestamp);
      if (!payload || !payload.eid) {
        failures.push(`${label}: track() returned no payload`);
        continue;
      }
      const eid = payload.eid;
      if (!tracked.has(eid)) {
        failures.push(`${label}: afterTrack did not see eid ${eid}`);
        continue;
      }
      // Wait for this event's request to complete (bufferSize 1 sends it at once; flush() nudges).
      const deadline = Date.now() + opts.timeoutMs;
      while (!(requests.get(eid)?.done) && fatal.length === 0 && Date.now() < deadline) {
        await t.flush();
        if (!(requests.get(eid)?.done)) await sleep(5);
      }
      const rec = requests.get(eid);
      if (fatal.length) break;
      if (!rec || !rec.done) {
        failures.push(`${label}: no completed request within ${opts.timeoutMs} ms`);
        continue;
      }
      try {
        checkHit(c, base64, tracked.get(eid), rec, opts.endpoint);
      } catch (e) {
        failures.push(`${label}: ${e.message}`);
        continue;
      }
      const u = new URL(rec.url);
      maxUrl = Math.max(maxUrl, rec.url.length);
      lines.push({
        case: c.name,
        base64,
        params: Object.fromEntries(u.searchParams),
        eid,
        request_uri: u.pathname + u.search,
        profile: profileName,
        headers: rec.headers,
      });
    }
    if (fatal.length) break;
  }
  // Let onRequestFailure callbacks (run via setTimeout 0) report. No final flush(): after a
  // network error the event stays queued and a flush would just retry it.
  await sleep(20);

  if (unmatched.length) failures.push(`${unmatched.length} request(s) without a new eid: ${unmatched.map((r) => r.url).join(' ')}`);
  const expected = cases.length * modes.length;
  if (!fatal.length && requests.size !== expected) failures.push(`sent ${requests.size} requests, expected ${expected}`);
  if (fatal.length || failures.length) {
    for (const f of [...fatal, ...failures]) console.error(`FAIL ${f}`);
    console.error(`send.mjs: ${fatal.length + failures.length} problem(s); ${opts.out} not written`);
    return 1;
  }
  writeFileSync(opts.out, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  console.error(
    `send.mjs: @snowplow/node-tracker ${trackerVersion}: ${lines.length} hits ` +
      `(${cases.length} cases x base64 ${modes.join('/')}) all 200 image; longest URL ${maxUrl} bytes; wrote ${opts.out}`,
  );
  return 0;
}

// Verify one completed hit: HTTP result, URL shape, both decoders agree, decoded params equal the
// tracker's payload (+ stm), and the case's intended values round-trip.
function checkHit(c, base64, payload, rec, endpoint) {
  if (rec.error) throw new Error(`request error ${rec.error}`);
  if (rec.method !== 'GET') throw new Error(`method ${rec.method}, expected GET`);
  if (!rec.ok) throw new Error(`status ${rec.status}, content-type ${rec.contentType}, ${rec.bodyLength} body bytes (want 200 + image)`);
  const u = new URL(rec.url);
  if (`${u.protocol}//${u.host}` !== endpoint || u.pathname !== '/i') throw new Error(`unexpected URL ${rec.url}`);
  if (!/^[\x21-\x7e]*$/.test(u.search)) throw new Error('query is not pure printable ASCII');

  const viaUSP = Object.fromEntries(u.searchParams);
  if ([...u.searchParams.keys()].length !== Object.keys(viaUSP).length) throw new Error('duplicate parameters');
  deepStrictEqual(manualDecode(u.search), viaUSP, 'URLSearchParams and manual decoder disagree');

  const fromTracker = Object.fromEntries(Object.entries(payload).map(([k, v]) => [k, String(v)]));
  const { stm, ...rest } = viaUSP;
  if (!/^\d{13}$/.test(stm || '')) throw new Error(`missing/odd stm ${stm}`);
  deepStrictEqual(rest, fromTracker, 'decoded URL params differ from the tracker payload');

  const want = { aid: APP_ID, tna: NAMESPACE, p: 'srv', ...c.expect };
  for (const [k, v] of Object.entries(want)) {
    if (viaUSP[k] !== String(v)) throw new Error(`param ${k}=${JSON.stringify(viaUSP[k])}, expected ${JSON.stringify(String(v))}`);
  }
  for (const k of c.absent || []) if (k in viaUSP) throw new Error(`param ${k} should be absent`);

  const ue = decodeJsonParam(viaUSP, base64, 'ue_pr', 'ue_px');
  if (c.ue) deepStrictEqual(ue, { schema: UNSTRUCT_SCHEMA, data: c.ue }, 'unstruct event did not round-trip');
  else if (ue !== undefined) throw new Error('unexpected unstruct event');
  const co = decodeJsonParam(viaUSP, base64, 'co', 'cx');
  if (c.contexts) deepStrictEqual(co, { schema: CONTEXTS_SCHEMA, data: c.contexts }, 'contexts did not round-trip');
  else if (co !== undefined) throw new Error('unexpected contexts');
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error('send.mjs: crashed:', e?.stack || e);
    process.exit(1);
  },
);
