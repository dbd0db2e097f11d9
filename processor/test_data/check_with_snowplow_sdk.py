#!/usr/bin/env python3
"""Cross-checks the golden outputs with Snowplow's own Python analytics SDK
(`pip install snowplow_analytics_sdk`): each `ok/*.tsv` row, transformed by the SDK into JSON,
must equal the matching `ok/*.json` line that plow-processor wrote. This proves at once that the
TSV is readable by Snowplow's SDKs and that the JSON is shaped the way they shape it (flattened
contexts, unstruct event, timestamps, booleans). Run from this directory; exits 1 on a difference.
"""
import glob
import json
import sys

from snowplow_analytics_sdk.event_transformer import transform

differences = 0
events = 0
for tsv in sorted(glob.glob("ok/*.tsv")):
    rows = open(tsv, encoding="utf-8").read().splitlines()
    ours = open(tsv[:-4] + ".json", encoding="utf-8").read().splitlines()
    if len(rows) != len(ours):
        sys.exit(f"{tsv}: {len(rows)} TSV rows but {len(ours)} JSON lines")
    for row, line in zip(rows, ours):
        events += 1
        sdk, mine = transform(row), json.loads(line)
        for key in sorted(set(sdk) | set(mine)):
            a, b = sdk.get(key), mine.get(key)
            # The Python SDK keeps se_value as text; the Scala SDK (used by the Elasticsearch
            # loader) makes it a number, as plow-processor does.
            if key == "se_value" and a is not None and b is not None and float(a) == b:
                continue
            if a != b:
                differences += 1
                print(f"{tsv}: {key}: SDK {a!r} vs plow-processor {b!r}")
print(f"{events} events, {differences} differences")
sys.exit(1 if differences or not events else 0)
