#!/usr/bin/env python3
"""Flattens what otlp_receiver.py recorded: one JSON object per span.

otlp_spans.py OUT: prints {"trace","span","parent","name","kind",
"attrs":{...},"links":[[trace,span]...],"events":[{"name","time","attrs"}...],
"status"} per line, with the resource's service.name as "service".
"""
import json
import sys


def value(v):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    return next(iter(v.values()), None)


for line in open(sys.argv[1]):
    doc = json.loads(line)
    for rs in doc["resourceSpans"]:
        res = {a["key"]: value(a["value"]) for a in rs["resource"]["attributes"]}
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                print(json.dumps({
                    "service": res.get("service.name"),
                    "resource": res,
                    "trace": s["traceId"], "span": s["spanId"],
                    "parent": s.get("parentSpanId", ""), "name": s["name"],
                    "kind": s["kind"],
                    "start": int(s["startTimeUnixNano"]), "end": int(s["endTimeUnixNano"]),
                    "attrs": {a["key"]: value(a["value"]) for a in s.get("attributes", [])},
                    "links": [[l["traceId"], l["spanId"]] for l in s.get("links", [])],
                    "events": [{"name": e["name"], "time": int(e["timeUnixNano"]),
                                "attrs": {a["key"]: value(a["value"])
                                          for a in e.get("attributes", [])}}
                               for e in s.get("events", [])],
                    "status": s.get("status", {}).get("code", 0),
                }))
