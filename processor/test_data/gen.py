#!/usr/bin/env python3
"""Writes the golden-test inputs (canonical access-log lines, nginx escaping). Run from this
directory: python3 gen.py. Expected outputs are blessed with UPDATE_EXPECT=1 cargo test."""
import base64, json, urllib.parse

FIELDS = ["msec", "remote_addr", "http_x_forwarded_for", "host", "request_method", "request_uri",
          "status", "http_referer", "http_user_agent", "uid_got", "uid_set", "request_id",
          "request_body"]
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
COOKIE = "sp=0100007F9C38026BC521C2A102070303"

def esc(value):
    out = []
    for b in value.encode():
        if b in (0x22, 0x5c) or b < 0x20 or b >= 0x7f:
            out.append("\\x%02X" % b)
        else:
            out.append(chr(b))
    return "".join(out)

def line(**kw):
    base = {"msec": "1700000000.123", "remote_addr": "203.0.113.7", "host": "collector.example.com",
            "request_method": "GET", "status": "200", "http_user_agent": UA, "uid_got": COOKIE,
            "request_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
    base.update(kw)
    return "\t".join(esc(base[f]) if base.get(f) is not None else "-" for f in FIELDS) + "\n"

def get(params, **kw):
    return line(request_uri="/i?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote), **kw)

def b64(doc):
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")

CTX = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": [
    {"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
     "data": {"id": "a0c5e9f1-3d4b-4f0e-9a4c-2b1d0e6f7a8b"}},
    {"schema": "iglu:com.acme/productEntity/jsonschema/1-0-2",
     "data": {"sku": "BOOT-42", "name": "Zoë \"Z\" boots\t東京", "price": 99.5}}]}
UE = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
      "data": {"schema": "iglu:com.acme/buttonClick/jsonschema/2-0-1", "data": {"id": "buy-now", "n": 2}}}
COMMON = {"tv": "js-3.17.0", "tna": "sp1", "aid": "shop", "p": "web", "tz": "Europe/London",
          "lang": "en-GB", "cs": "UTF-8", "res": "1920x1080", "vp": "1200x800", "ds": "1180x3000",
          "cd": "24", "cookie": "1", "duid": "8e1d5e4b-6a8a-4c58-b7a4-0c0f1a2b3c4d",
          "sid": "0bd0c5f0-6d1e-4fca-8f31-4bdcb6c2c1d1", "vid": "3",
          "stm": "1700000000100", "dtm": "1700000000000",
          "url": "https://shop.example.com/boots/chelsea?utm_source=news&utm_medium=email#reviews",
          "refr": "https://www.google.com/search?q=chelsea+boots", "page": "Chelsea boots"}

def ok():
    with open("ok/page_view.log", "w") as f:
        f.write(get({"e": "pv", "eid": "c6ef3124-b53a-4b13-a233-0088f79dcbcb", **COMMON,
                     "co": json.dumps(CTX, separators=(",", ":"), ensure_ascii=False)},
                    http_x_forwarded_for="10.0.0.3, 81.2.69.160",
                    http_referer="https://shop.example.com/boots/chelsea"))
        # No url: the page is the Referer header; no eid: a derived id; the cookie was just set.
        f.write(get({"e": "pv", "p": "web", "aid": "shop"}, uid_got=None, uid_set=COOKIE,
                    http_referer="http://shop.example.com:8080/"))
    with open("ok/struct_and_ping.log", "w") as f:
        f.write(get({"e": "se", "eid": "1d2c3b4a-0000-4000-8000-000000000001", **COMMON,
                     "se_ca": "shop", "se_ac": "add-to-basket", "se_la": "BOOT-42",
                     "se_pr": "red", "se_va": "99.5"}))
        f.write(get({"e": "pp", "eid": "1d2c3b4a-0000-4000-8000-000000000002", **COMMON,
                     "pp_mix": "0", "pp_max": "120", "pp_miy": "-5", "pp_may": "2400",
                     "ttm": "1699999999000"}))
    with open("ok/ecommerce.log", "w") as f:
        f.write(get({"e": "tr", "eid": "1d2c3b4a-0000-4000-8000-000000000003", **COMMON,
                     "tr_id": "order-1", "tr_af": "web", "tr_tt": "199", "tr_tx": "33.17",
                     "tr_sh": "4.99", "tr_ci": "London", "tr_st": "England", "tr_co": "GB",
                     "tr_cu": "GBP"}))
        f.write(get({"e": "ti", "eid": "1d2c3b4a-0000-4000-8000-000000000004", **COMMON,
                     "ti_id": "order-1", "ti_sk": "BOOT-42", "ti_nm": "Chelsea boot",
                     "ti_ca": "boots", "ti_pr": "99.5", "ti_qu": "2", "ti_cu": "GBP"}))
    with open("ok/unstruct_base64.log", "w") as f:
        f.write(get({"e": "ue", **COMMON, "ue_px": b64(UE), "cx": b64(CTX), "nuid": "n-override",
                     "ip": "198.51.100.99", "ua": "curl/8.0"}))
    with open("ok/tp2_post.log", "w") as f:
        body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                "data": [{"e": "pv", "eid": "1d2c3b4a-0000-4000-8000-000000000005", **COMMON},
                         {"e": "ue", "eid": "1d2c3b4a-0000-4000-8000-000000000006", **COMMON,
                          "ue_pr": json.dumps(UE)},
                         {"e": "se", **COMMON, "se_ca": "c", "se_ac": "a", "tnuid": "tracker-nuid"}]}
        f.write(line(request_method="POST", request_uri="/com.snowplowanalytics.snowplow/tp2",
                     request_body=json.dumps(body, ensure_ascii=False)))

def err():
    with open("err/format.log", "w") as f:
        f.write("this is not an access log line\n")
        f.write(line(msec="yesterday", request_uri="/i?e=pv&p=web"))
    with open("err/adapter.log", "w") as f:
        f.write(line(request_uri="/favicon.ico", status="404"))
        f.write(line(request_method="POST", request_uri="/com.snowplowanalytics.snowplow/tp2",
                     request_body="{\"schema\":\"iglu:com.acme/x/jsonschema/1-0-0\",\"data\":[]}"))
        f.write(line(request_method="POST", request_uri="/com.snowplowanalytics.snowplow/tp2",
                     request_body="not json"))
        # A valid envelope with no events: still a bad row, so the line is not lost.
        f.write(line(request_method="POST", request_uri="/com.snowplowanalytics.snowplow/tp2",
                     request_body="{\"schema\":\"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4\",\"data\":[]}"))
    with open("err/protocol.log", "w") as f:
        f.write(get({"e": "zz", "p": "moon", "eid": "not-a-uuid", "dtm": "soon", "vid": "-1",
                     "res": "wide", "f_pdf": "yes"}))
        f.write(get({"p": "web"}))
    with open("err/schema.log", "w") as f:
        f.write(get({"e": "pv", "p": "web", "eid": "1d2c3b4a-0000-4000-8000-000000000007",
                     "co": "{not json"}))
        f.write(get({"e": "ue", "p": "web", "ue_pr": json.dumps({"data": {"x": 1}})}))
        f.write(get({"e": "pv", "p": "web", "url": "shop.example.com/no-scheme"}))

def corpus(n, path):
    """A realistic corpus for the whole-process benchmark: pv with contexts (40 %), pp with base64
    contexts (20 %), se (10 %), base64 ue with contexts (20 %), tp2 POSTs of 3 events (10 %)."""
    uas = [UA, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
           "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"]
    with open(path, "w") as f:
        for i in range(n):
            common = dict(COMMON, eid="c6ef3124-b53a-4b13-a233-%012x" % i,
                          duid="8e1d5e4b-6a8a-4c58-b7a4-%012x" % (i % 700),
                          dtm=str(1700000000000 + i * 37), stm=str(1700000000050 + i * 37),
                          url="https://shop.example.com/boots/item-%d?utm_source=news" % (i % 300))
            ctx = json.loads(json.dumps(CTX))
            ctx["data"][1]["data"]["sku"] = "SKU-%d" % (i % 500)
            kw = dict(msec="%d.%03d" % (1700000000 + i // 100, i % 1000),
                      http_x_forwarded_for="10.0.%d.%d, 81.2.%d.%d" % (i % 3, i % 250, i % 200, i % 250),
                      http_user_agent=uas[i % 3],
                      uid_got="sp=0100007F9C38026BC521C2A1%08X" % (i % 700))
            k = i % 10
            if k < 4:
                f.write(get({"e": "pv", **common, "co": json.dumps(ctx, separators=(",", ":"), ensure_ascii=False)}, **kw))
            elif k < 6:
                f.write(get({"e": "pp", **common, "pp_mix": "0", "pp_max": "120", "pp_miy": "0",
                             "pp_may": str(i % 3000), "cx": b64(ctx)}, **kw))
            elif k < 7:
                f.write(get({"e": "se", **common, "se_ca": "shop", "se_ac": "add-to-basket",
                             "se_la": "SKU-%d" % (i % 500), "se_va": "99.5",
                             "co": json.dumps(ctx, separators=(",", ":"))}, **kw))
            elif k < 9:
                f.write(get({"e": "ue", **common, "ue_px": b64(UE), "cx": b64(ctx)}, **kw))
            else:
                events = [{"e": e, **common, "eid": "d6ef3124-b53a-4b13-a233-%012x" % (i * 3 + j),
                           "co": json.dumps(ctx)} for j, e in enumerate(["pv", "pp", "se"])]
                body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
                        "data": events}
                f.write(line(request_method="POST", request_uri="/com.snowplowanalytics.snowplow/tp2",
                             request_body=json.dumps(body), **kw))

if __name__ == "__main__":
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "--corpus":
        corpus(int(sys.argv[2]), sys.argv[3])
    else:
        ok()
        err()
