#!/usr/bin/env python3
"""openapi_call.py - does a call fit an OpenAPI document?

    openapi_call.py DOC METHOD PATH [BODY]

Exits 0 and prints "as documented" when DOC (OpenAPI 3, JSON) has METHOD on
a path template matching PATH, and BODY (JSON text, may be empty) is what
its request body takes: present when required, its keys among the
schema's properties when additionalProperties is false, every required
key there.  Otherwise exits 1 and says what does not fit.  Used on the
example commands of the deployment files (tests/packaging/deploy.sh).
"""
import json
import re
import sys


def resolve(doc, o):
    while isinstance(o, dict) and "$ref" in o:
        target = doc
        for key in o["$ref"].lstrip("#/").split("/"):
            target = target[key]
        o = target
    return o


def check(doc, method, path, body):
    call = "%s %s" % (method.upper(), path)
    ops = [v for p, v in doc["paths"].items()
           if re.fullmatch(re.sub(r"\{[^}]*\}", "[^/]+", p), path)]
    if not ops or method.lower() not in ops[0]:
        return "%s is not in the document" % call
    rb = resolve(doc, ops[0][method.lower()].get("requestBody", {}))
    if not body:
        return "%s needs a body" % call if rb.get("required") else None
    if not rb:
        return "%s takes no body" % call
    schema = resolve(doc, rb["content"]["application/json"]["schema"])
    keys = set(json.loads(body))
    extra = keys - set(schema.get("properties", {}))
    if schema.get("additionalProperties") is False and extra:
        return "%s takes no %s" % (call, ", ".join(sorted(extra)))
    missing = set(schema.get("required", [])) - keys
    if missing:
        return "%s needs %s" % (call, ", ".join(sorted(missing)))
    return None


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        doc = json.load(f)
    why = check(doc, argv[2], argv[3], argv[4] if len(argv) == 5 else "")
    print(why or "as documented")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
