#!/usr/bin/env python3
"""Writes plowline.ndjson, the Kibana saved objects of plowline's web-analytics dashboard.

    python3 dashboards/kibana/generate.py            # rewrite plowline.ndjson
    python3 dashboards/kibana/generate.py --check    # exit 1 if plowline.ndjson is stale

The objects are Kibana 8.x saved objects for the saved-objects import API
(`POST /api/saved_objects/_import`): two data views (`tracker-events-*` with the time field
`derived_tstamp`, `tracker-bad-*` with `data.failure.timestamp`), aggregation-based
visualizations, a map, and the dashboard that holds them. Every object names what it uses in its
`references`; the tests check that each reference resolves and that each field a visualization
uses exists in the Elasticsearch index template with a type that fits.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "plowline.ndjson"

EVENTS = "plowline-events"
BAD_ROWS = "plowline-bad-rows"
SEARCH_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
CORE = "8.8.0"


def data_view(id, title, time_field, name):
    return {
        "id": id,
        "type": "index-pattern",
        "coreMigrationVersion": CORE,
        "typeMigrationVersion": "8.0.0",
        "attributes": {"title": title, "timeFieldName": time_field, "name": name},
        "references": [],
    }


def search_source(query):
    return json.dumps(
        {
            "query": {"query": query, "language": "kuery"},
            "filter": [],
            "indexRefName": SEARCH_REF,
        }
    )


def vis(id, title, vis_type, params, aggs, query="", view=EVENTS):
    """An aggregation-based visualization over one data view."""
    state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
    return {
        "id": id,
        "type": "visualization",
        "coreMigrationVersion": CORE,
        "typeMigrationVersion": "8.5.0",
        "attributes": {
            "title": title,
            "description": "",
            "uiStateJSON": "{}",
            "version": 1,
            "visState": json.dumps(state),
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source(query)},
        },
        "references": [{"name": SEARCH_REF, "type": "index-pattern", "id": view}],
    }


def count(id="1"):
    return {"id": id, "enabled": True, "type": "count", "schema": "metric", "params": {}}


def unique(id, field, label):
    return {
        "id": id,
        "enabled": True,
        "type": "cardinality",
        "schema": "metric",
        "params": {"field": field, "customLabel": label},
    }


def terms(id, field, size, schema="segment", label=None):
    params = {"field": field, "size": size, "order": "desc", "orderBy": "1",
              "otherBucket": False, "missingBucket": False}
    if label:
        params["customLabel"] = label
    return {"id": id, "enabled": True, "type": "terms", "schema": schema, "params": params}


def date_histogram(id, field):
    return {
        "id": id,
        "enabled": True,
        "type": "date_histogram",
        "schema": "segment",
        "params": {"field": field, "interval": "auto", "min_doc_count": 1,
                   "extended_bounds": {}},
    }


def table(id, title, buckets, metrics=None, query=""):
    aggs = [count()] + (metrics or []) + buckets
    params = {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False,
              "showTotal": False, "totalFunc": "sum", "percentageCol": ""}
    return vis(id, title, "table", params, aggs, query)


def pie(id, title, field, query="", view=EVENTS):
    params = {"type": "pie", "addTooltip": True, "isDonut": True,
              "legendDisplay": "show", "legendPosition": "right",
              "labels": {"show": True, "values": True, "last_level": True, "truncate": 100}}
    return vis(id, title, "pie", params, [count(), terms("2", field, 10)], query, view)


def line(id, title, split_field=None, query=""):
    aggs = [count(), date_histogram("2", "derived_tstamp")]
    if split_field:
        aggs.append(terms("3", split_field, 5, schema="group"))
    params = {"type": "line", "addTooltip": True, "legendPosition": "right",
              "seriesParams": [{"show": True, "type": "line", "mode": "normal",
                                "data": {"label": "Count", "id": "1"},
                                "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True,
                                "showCircles": True}],
              "categoryAxes": [{"id": "CategoryAxis-1", "type": "category",
                                "position": "bottom", "show": True,
                                "scale": {"type": "linear"}, "labels": {"show": True}}],
              "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value",
                             "position": "left", "show": True,
                             "scale": {"type": "linear", "mode": "normal"},
                             "labels": {"show": True}, "title": {"text": "Count"}}]}
    return vis(id, title, "line", params, aggs, query)


def metric(id, title, metrics, query=""):
    params = {"addTooltip": True, "addLegend": False, "type": "metric",
              "metric": {"colorSchema": "Green to Red", "colorsRange": [{"from": 0, "to": 10000}],
                         "labels": {"show": True}, "style": {"fontSize": 48}}}
    return vis(id, title, "metric", params, metrics, query)


def visitors_map(id, title):
    layer_ref = "layer_1_source_index_pattern"
    layers = [
        {"id": "basemap", "type": "EMS_VECTOR_TILE", "visible": True, "alpha": 1,
         "minZoom": 0, "maxZoom": 24,
         "sourceDescriptor": {"type": "EMS_TMS", "isAutoSelect": True},
         "style": {"type": "EMS_VECTOR_TILE"}},
        {"id": "visitors", "type": "GEOJSON_VECTOR", "label": "Visitors", "visible": True,
         "alpha": 0.75, "minZoom": 0, "maxZoom": 24,
         "sourceDescriptor": {"type": "ES_GEO_GRID", "id": "visitors-grid",
                              "geoField": "geo_location", "requestType": "point",
                              "resolution": "COARSE", "applyGlobalQuery": True,
                              "applyGlobalTime": True,
                              "metrics": [{"type": "count"},
                                          {"type": "cardinality", "field": "domain_userid"}],
                              "indexPatternRefName": layer_ref},
         "style": {"type": "VECTOR", "properties": {
             "fillColor": {"type": "DYNAMIC", "options": {
                 "field": {"name": "doc_count", "origin": "source"}, "color": "Blues"}},
             "iconSize": {"type": "DYNAMIC", "options": {
                 "field": {"name": "cardinality_of_domain_userid", "origin": "source"},
                 "minSize": 4, "maxSize": 32}}}}},
    ]
    return {
        "id": id,
        "type": "map",
        "coreMigrationVersion": CORE,
        "typeMigrationVersion": "8.4.0",
        "attributes": {
            "title": title,
            "description": "Unique visitors per area, from geo_location (GeoIP enrichment).",
            "layerListJSON": json.dumps(layers),
            "mapStateJSON": json.dumps({"zoom": 1.5, "center": {"lon": 0, "lat": 20},
                                        "query": {"query": "", "language": "kuery"},
                                        "filters": []}),
            "uiStateJSON": json.dumps({"isLayerTOCOpen": False}),
        },
        "references": [{"name": layer_ref, "type": "index-pattern", "id": EVENTS}],
    }


def dashboard(id, title, panels):
    """`panels`: (object, width, height) in reading order on a 48-column grid."""
    panels_json, references = [], []
    x = y = row_height = 0
    for index, (obj, w, h) in enumerate(panels, start=1):
        if x + w > 48:
            x, y, row_height = 0, y + row_height, 0
        panel_index = str(index)
        panels_json.append({
            "version": "8.8.0",
            "type": obj["type"],
            "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel_index},
            "panelIndex": panel_index,
            "embeddableConfig": {"enhancements": {}},
            "panelRefName": f"panel_{panel_index}",
        })
        references.append({"name": f"{panel_index}:panel_{panel_index}",
                           "type": obj["type"], "id": obj["id"]})
        x += w
        row_height = max(row_height, h)
    return {
        "id": id,
        "type": "dashboard",
        "coreMigrationVersion": CORE,
        "typeMigrationVersion": "8.7.0",
        "attributes": {
            "title": title,
            "description": "Traffic, visitors, acquisition, technology and data quality of the "
                           "events plowline loads into Elasticsearch.",
            "panelsJSON": json.dumps(panels_json),
            "optionsJSON": json.dumps({"useMargins": True, "syncColors": False,
                                       "hidePanelTitles": False}),
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000},
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                {"query": {"query": "", "language": "kuery"}, "filter": []})},
        },
        "references": references,
    }


def objects():
    views = [
        data_view(EVENTS, "tracker-events-*", "derived_tstamp", "plowline events"),
        data_view(BAD_ROWS, "tracker-bad-*", "data.failure.timestamp", "plowline bad rows"),
    ]
    totals = metric("plowline-totals", "Events, visitors and sessions", [
        count(),
        unique("2", "domain_userid", "Unique visitors"),
        unique("3", "domain_sessionid", "Sessions"),
    ])
    page_view_totals = metric("plowline-page-views", "Page views",
                              [count(), unique("2", "domain_userid", "Visitors")],
                              query="event_name : \"page_view\"")
    events_over_time = line("plowline-events-over-time", "Events over time by event",
                            split_field="event_name")
    page_views_over_time = line("plowline-page-views-over-time", "Page views over time",
                                query="event_name : \"page_view\"")
    top_pages = table("plowline-top-pages", "Top pages",
                      [terms("3", "page_urlhost", 5, "bucket", "Host"),
                       terms("4", "page_urlpath", 20, "bucket", "Path")],
                      [unique("2", "domain_userid", "Visitors")],
                      query="event_name : \"page_view\"")
    referrers = table("plowline-referrers", "Top referrers by medium and source",
                      [terms("3", "refr_medium", 10, "bucket", "Medium"),
                       terms("4", "refr_source", 20, "bucket", "Source")],
                      [unique("2", "domain_userid", "Visitors")],
                      query="refr_medium : * and not refr_medium : \"internal\"")
    campaigns = table("plowline-campaigns", "Campaigns",
                      [terms("3", "mkt_source", 10, "bucket", "Source"),
                       terms("4", "mkt_medium", 10, "bucket", "Medium"),
                       terms("5", "mkt_campaign", 20, "bucket", "Campaign")],
                      [unique("2", "domain_userid", "Visitors")],
                      query="mkt_source : * or mkt_medium : * or mkt_campaign : *")
    browsers = pie("plowline-browsers", "Browsers", "br_family")
    systems = pie("plowline-os", "Operating systems", "os_family")
    devices = pie("plowline-devices", "Device types", "dvce_type")
    mobile = pie("plowline-mobile", "Mobile vs desktop", "dvce_ismobile")
    countries = pie("plowline-countries", "Countries", "geo_country")
    structured = table("plowline-structured-events", "Structured events by category and action",
                       [terms("3", "se_category", 10, "bucket", "Category"),
                        terms("4", "se_action", 20, "bucket", "Action")],
                       [unique("2", "domain_userid", "Visitors")],
                       query="event_name : \"event\"")
    bad_rows = pie("plowline-bad-rows-by-type", "Bad rows by type", "schema", view=BAD_ROWS)
    world = visitors_map("plowline-visitors-map", "Visitors map")
    board = dashboard("plowline-web-analytics", "plowline — web analytics", [
        (totals, 24, 8), (page_view_totals, 24, 8),
        (events_over_time, 24, 14), (page_views_over_time, 24, 14),
        (top_pages, 24, 16), (referrers, 24, 16),
        (campaigns, 24, 14), (structured, 24, 14),
        (browsers, 12, 12), (systems, 12, 12), (devices, 12, 12), (mobile, 12, 12),
        (world, 32, 18), (countries, 16, 18),
        (bad_rows, 24, 12),
    ])
    return views + [totals, page_view_totals, events_over_time, page_views_over_time, top_pages,
                    referrers, campaigns, browsers, systems, devices, mobile, countries,
                    structured, bad_rows, world, board]


def render():
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in objects())


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is stale: run python3 dashboards/kibana/generate.py")
        return
    if sys.argv[1:]:
        sys.exit(__doc__)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
