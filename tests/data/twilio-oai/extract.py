#!/usr/bin/env python3
"""Cuts the parts the tests' Twilio fake follows out of Twilio's OpenAPI description.

Source: https://github.com/twilio/twilio-oai, spec/json/twilio_api_v2010.json
(commit d50069b, "[Librarian] Regenerated @ 40ca64a"), Apache-2.0.

    python3 extract.py twilio_api_v2010.json > api_v2010_subset.json

Kept: the paths of Accounts/{Sid}, IncomingPhoneNumbers (list and instance), Calls
(list) and Messages (list), with every component schema they name.
"""
import json
import sys

PATHS = [
    "/2010-04-01/Accounts/{Sid}.json",
    "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json",
    "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json",
    "/2010-04-01/Accounts/{AccountSid}/Calls.json",
    "/2010-04-01/Accounts/{AccountSid}/Messages.json",
]

spec = json.load(open(sys.argv[1]))
schemas = spec["components"]["schemas"]
keep = {}


def walk(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in keep:
                keep[name] = schemas[name]
                walk(schemas[name])
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)


paths = {p: spec["paths"][p] for p in PATHS}
walk(paths)
out = {
    "openapi": spec["openapi"],
    "info": spec["info"],
    "servers": spec.get("servers"),
    "paths": paths,
    "components": {"schemas": dict(sorted(keep.items()))},
}
json.dump(out, sys.stdout, indent=1, sort_keys=False)
sys.stdout.write("\n")
