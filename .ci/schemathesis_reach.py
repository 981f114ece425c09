"""Fail CI's schemathesis run when an operation was never really tested.

Reads the run's HAR report and the served OpenAPI document, and names every
operation that was never called, or never answered anything but 401 and the
statuses a request can get before its token is read (its requests never got
past authentication: the run proved nothing about it). Exit 1 if any.

    python .ci/schemathesis_reach.py openapi.json report.har
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from urllib.parse import urlsplit

# Answered before the token is looked at (app.inputs and the rate limiter guard every
# request first): a malformed or non-JSON body, one too large, too many requests, headers
# too large. Such an answer says nothing about whether the token would have been taken.
BEFORE_THE_TOKEN = frozenset({400, 401, 413, 415, 429, 431})


def operations(document: dict) -> list[tuple[str, re.Pattern, str]]:
    """(method, path pattern, operationId) of every operation, literal paths first."""
    found = []
    for path, item in document["paths"].items():
        segments = ("[^/]+" if part.startswith("{") else re.escape(part) for part in path.split("/"))
        pattern = re.compile("^" + "/".join(segments) + "$")
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                found.append((method.upper(), pattern, operation["operationId"], path.count("{")))
    found.sort(key=lambda entry: entry[3])  # /postings/mine before /postings/{id}
    return [(method, pattern, name) for method, pattern, name, _ in found]


def main(document_path: str, har_path: str) -> int:
    with open(document_path, encoding="utf-8") as f:
        document = json.load(f)
    with open(har_path, encoding="utf-8") as f:
        entries = json.load(f)["log"]["entries"]
    ops = operations(document)
    statuses: dict[str, set[int]] = defaultdict(set)
    for entry in entries:
        method = entry["request"]["method"].upper()
        path = urlsplit(entry["request"]["url"]).path
        for op_method, pattern, name in ops:
            if op_method == method and pattern.match(path):
                statuses[name].add(int(entry["response"]["status"]))
                break
    problems = []
    for _method, _pattern, name in ops:
        seen = statuses.get(name)
        if not seen:
            problems.append(f"{name}: never called")
        elif seen <= BEFORE_THE_TOKEN:
            problems.append(f"{name}: never answered past authentication (only {sorted(seen)})")
    reached = sum(1 for _m, _p, name in ops if statuses.get(name, set()) - BEFORE_THE_TOKEN)
    print(f"schemathesis reached {reached} of {len(ops)} operations past authentication")
    for problem in problems:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
