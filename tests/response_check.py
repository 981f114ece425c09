"""Every JSON answer the test suite provokes is checked against the OpenAPI
document: a 2xx against the operation's documented schema (so a field marked
``required`` that is sometimes missing, a null where none is allowed, a value
outside an enum or an undocumented field fails the test that provoked it), an
error against the envelope."""

from __future__ import annotations

import json
import re

from flask import Flask, request
from openapi_schema_validator import OAS30Validator

_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")


# The document differs between apps only by the configured districts: build it,
# and its validators, once per list of districts.
_DOCUMENTS: dict[tuple, tuple[dict, dict]] = {}


class ResponseChecker:
    def __init__(self, app: Flask):
        self.app = app
        self.problems: list[str] = []
        self._spec: dict | None = None
        self._validators: dict[str, OAS30Validator] = {}
        app.after_request(self._check)

    def _document(self) -> dict:
        if self._spec is None:
            from app.extensions import api

            key = tuple(self.app.config["DISTRICTS"])
            if key not in _DOCUMENTS:
                _DOCUMENTS[key] = (as_validated(json.loads(json.dumps(api.spec.to_dict()))), {})
            self._spec, self._validators = _DOCUMENTS[key]
        return self._spec

    def _validator(self, ref: str) -> OAS30Validator:
        if ref not in self._validators:
            schema = {"$ref": ref, "components": self._document()["components"]}
            self._validators[ref] = OAS30Validator(schema)
        return self._validators[ref]

    def _schema_ref(self, status: int) -> str | None:
        rule = request.url_rule
        if rule is None:
            return None
        spec = self._document()
        operation = spec["paths"].get(_PARAM.sub(r"{\1}", rule.rule), {}).get(request.method.lower())
        if operation is None:
            return None
        response = operation["responses"].get(str(status))
        if response is None:
            return "#/components/schemas/Error" if status >= 400 else None
        if "$ref" in response:
            response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        return schema.get("$ref") if schema else None

    def _check(self, response):
        if response.mimetype != "application/json" or response.direct_passthrough:
            return response
        ref = self._schema_ref(response.status_code)
        if ref is None and response.status_code >= 400:
            ref = "#/components/schemas/Error"
        if ref is None:
            return response
        body = json.loads(response.get_data())
        if ref.endswith("/Error") and request.url_rule is not None and request.url_rule.rule == "/readyz":
            body = {k: v for k, v in body.items() if k != "checks"}  # a 503 adds its checks
        errors = sorted(self._validator(ref).iter_errors(body), key=lambda e: list(e.absolute_path))
        for error in errors[:3]:
            where = "/".join(str(p) for p in error.absolute_path)
            self.problems.append(
                f"{request.method} {request.path} {response.status_code} vs {ref.rsplit('/', 1)[1]}: "
                f"{where}: {error.message[:200]}"
            )
        return response


def as_validated(node):
    """The document as the client generators read it: ``nullable`` next to an
    ``allOf`` makes the whole value nullable (openapi-python-client: ``None |
    Model``). JSON Schema validators apply the ``allOf`` to null as well, so say
    it as an ``anyOf`` for them."""
    if isinstance(node, dict):
        node = {key: as_validated(value) for key, value in node.items()}
        if node.get("nullable") and "allOf" in node and "type" not in node:
            rest = {k: v for k, v in node.items() if k not in {"nullable", "allOf"}}
            return {**rest, "anyOf": [{"allOf": node["allOf"]}, {"type": "string", "nullable": True, "enum": [None]}]}
        return node
    if isinstance(node, list):
        return [as_validated(value) for value in node]
    return node
