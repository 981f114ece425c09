"""What the OpenAPI document says about errors: the one envelope of API.md,
on every error response an operation declares."""

from __future__ import annotations

import re
from collections.abc import Callable

from apispec import BasePlugin
from marshmallow import Schema, fields, validate

ERROR_REF = {"$ref": "#/components/schemas/Error"}


class ErrorSchema(Schema):
    """The error envelope (documentation only; app/errors.py builds it)."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code.", "example": 409})
    status = fields.String(required=True, metadata={"description": "The HTTP status phrase.", "example": "Conflict"})
    error = fields.String(
        required=True, metadata={"description": "A stable machine slug.", "example": "already_claimed"}
    )
    message = fields.String(required=True, metadata={"description": "Human-readable text, in the Accept-Language."})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={"description": "422 only: location (json, query, …) → field → messages."},
    )
    request_id = fields.String(metadata={"description": "500 only: quote it to the operator (also X-Request-ID)."})
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "`/readyz` 503 only: each check (database, redis) and what it found."},
    )


class ErrorResponsesPlugin(BasePlugin):
    """Give each declared 4xx/5xx response without a body the envelope as its body.

    ``@blp.alt_response(409, description="phone_taken")`` names the slugs a view
    may answer with; the body is always the envelope, so say so once, here.
    """

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict):
                continue
            for code, response in (operation.get("responses") or {}).items():
                if not str(code).isdigit() or int(code) < 400 or not isinstance(response, dict):
                    continue
                if "$ref" in response or "content" in response:
                    continue
                response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}


# --- the document for client generators ------------------------------------------------------------------------

BEARER = [{"bearerAuth": []}]
_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_SLUG = re.compile(r"[a-z][a-z0-9_]*[a-z0-9]")
# What a bearer-token operation answers without a (valid) token.
UNAUTHORIZED = "authorization_required, invalid_token, token_expired, token_revoked, wrong_token_type"


def error_slugs() -> list[str]:
    """Every slug the ``error`` field of the envelope can hold (app/errors.py)."""
    from app.errors import MESSAGES, STATUS_SLUGS

    return sorted(set(MESSAGES) | set(STATUS_SLUGS.values()))


def slugs_in(text: str | None) -> list[str]:
    """The known error slugs a response description names, in order."""
    known = set(error_slugs())
    found = [word for word in _SLUG.findall(text or "") if word in known]
    return list(dict.fromkeys(found))


class GeneratorPlugin(BasePlugin):
    """Make the document what client generators (openapi-python-client, openapi-generator)
    need, for every operation at once:

    - ``operationId``: the view function's name (snake_case, unique; a clash stops the app);
    - ``security``: what the view declares, else the bearer token; public views, those a token
      only personalises included, say ``[]`` (generators then take an anonymous client);
    - ``description``: the docstring's body, then who may call it and the error slugs it answers;
    - 401 and 404 declared where a token or a path id can produce them;
    - nullable nested objects and enums in the one form OpenAPI 3.0.3 reads strictly and generators
      type as "this or null": ``anyOf`` of the typed value and a null (:func:`or_null`);
    - district codes as an enum of the configured ``DISTRICTS``;
    - the privacy policy's version a client accepts: the one of ``PRIVACY_VERSION``, as a
      pattern matching it alone (the document is built at start, with the configuration).
      Not an enum: a generated client would type it as one, and an app released before
      the policy moved on could not accept the new version;
    - a request body example the server accepts (``mobile_api/examples.py``).

    :func:`finalize` then marks which response fields are always present.
    """

    def __init__(self, districts: tuple[str, ...], privacy_version: str):
        super().__init__()
        self.districts = list(districts)
        self.privacy_version = privacy_version
        self.operation_ids: dict[str, tuple[str, str]] = {}
        self.optional_fields: dict[str, set[str]] = {}

    def init_spec(self, spec) -> None:
        super().init_spec(spec)
        from apispec.ext.marshmallow import MarshmallowPlugin

        converter = next(p for p in spec.plugins if isinstance(p, MarshmallowPlugin)).converter
        districts, privacy_version = self.districts, self.privacy_version

        def typed_nullable(_converter, field, ret, **_kwargs):
            # apispec says anyOf [{"type": "object", "nullable": true}, {"$ref": …}]: any object at all passes.
            any_of = ret.get("anyOf")
            if field.allow_none and isinstance(any_of, list):
                refs = [item for item in any_of if "$ref" in item]
                if len(refs) == 1 and len(any_of) == 2:
                    ret["anyOf"] = or_null(refs[0], "object")
            return {}

        def district_enum(_converter, field, ret, **_kwargs):
            from mobile_api.fields import District

            return {"enum": list(districts)} if isinstance(field, District) else {}

        def privacy_version_pattern(_converter, field, ret, **_kwargs):
            from mobile_api.fields import PrivacyVersion

            return {"pattern": f"^{_literal(privacy_version)}$"} if isinstance(field, PrivacyVersion) else {}

        def nullable_enum(_converter, field, ret, **_kwargs):
            # One enum (titled after the field, so a generator names it Org + role = OrgRole) or null:
            # a nullable enum listing null makes openapi-python-client write three identical classes.
            enum = ret.get("enum")
            if field.allow_none and isinstance(enum, list) and "type" in ret:
                kind = ret.pop("type")
                values = [value for value in ret.pop("enum") if value is not None]
                ret.pop("nullable", None)
                titled = {"type": kind, "enum": values, "title": field.data_key or field.name}
                ret["anyOf"] = or_null(titled, kind)
            return {}

        def no_null_default(_converter, field, ret, **_kwargs):
            # A field left out is already null; `default: null` makes openapi-typescript (which reads
            # any default as "always there") require the field of every request that sends the schema.
            if "default" in ret and ret["default"] is None:
                del ret["default"]
            return {}

        def exclusive_bounds(_converter, field, ret, **_kwargs):
            # apispec states a Range's bounds as inclusive: say which are not (OpenAPI 3.0's boolean form).
            found = {}
            for validator in field.validators:
                if isinstance(validator, validate.Range):
                    if validator.min is not None and not validator.min_inclusive:
                        found["exclusiveMinimum"] = True
                    if validator.max is not None and not validator.max_inclusive:
                        found["exclusiveMaximum"] = True
            return found

        converter.add_attribute_function(exclusive_bounds)
        converter.add_attribute_function(no_null_default)
        converter.add_attribute_function(typed_nullable)
        converter.add_attribute_function(district_enum)
        converter.add_attribute_function(privacy_version_pattern)
        converter.add_attribute_function(nullable_enum)

    def schema_helper(self, name, _definition, **kwargs):
        """Remember the fields of ``name`` that a response may leave out (``metadata={"optional": True}``)."""
        from apispec.ext.marshmallow.common import resolve_schema_instance

        schema = kwargs.get("schema")
        if schema is not None:
            instance = resolve_schema_instance(schema)
            self.optional_fields[name] = {
                field.data_key or key for key, field in instance.fields.items() if field.metadata.get("optional")
            }
        return None

    def operation_helper(self, path=None, operations=None, rule=None, **kwargs) -> None:
        from mobile_api.examples import REQUEST_EXAMPLES

        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or rule is None:
                continue
            operation_id = rule.endpoint.rsplit(".", 1)[-1]
            if not _SNAKE.match(operation_id):
                raise ValueError(f"view {rule.endpoint} is not snake_case: rename it (it is the operationId)")
            taken = self.operation_ids.setdefault(operation_id, (path, method))
            if taken != (path, method):
                raise ValueError(f"operationId {operation_id} of {method} {path} is taken by {taken}: rename a view")
            operation["operationId"] = operation_id
            operation.setdefault("security", list(BEARER))
            responses = operation.setdefault("responses", {})
            if BEARER[0] in operation["security"] and "401" not in responses and 401 not in responses:
                responses["401"] = {"description": UNAUTHORIZED}
            if "{" in (path or "") and "404" not in responses and 404 not in responses:
                responses["404"] = {"description": "not_found"}
            for parameter in operation.get("parameters", []):
                _not_nullable(parameter)
            operation["description"] = _description(operation)
            if {} in operation["security"]:
                # Public, and a token makes it the caller's view (the description says so).
                # `[{}, bearer]` is how OpenAPI says "optional", but generators read any
                # requirement as "token needed" and want a signed-in client for the wall.
                operation["security"] = []
            example = REQUEST_EXAMPLES.get(operation_id)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                if example is None:
                    raise ValueError(f"{operation_id} takes a JSON body: give an example in mobile_api/examples.py")
                body["example"] = example


def _literal(text: str) -> str:
    """``text`` as a pattern matching it literally, escaped as ECMAScript (JSON Schema's
    patterns) and Python read alike: only the syntax characters (re.escape escapes more)."""
    return "".join("\\" + char if char in "\\^$.*+?()[]{}|/" else char for char in text)


def or_null(schema: dict, kind: str) -> list[dict]:
    """``schema`` or null, as OpenAPI 3.0.3 says it strictly: ``nullable`` counts only
    beside a ``type``, and an ``allOf`` or ``$ref`` never lets null through, so null is
    its own branch (a ``kind`` that is only null). Generators read the pair as "this or
    null" (openapi-python-client: ``Location | None``; openapi-typescript: ``… | null``)."""
    return [schema, {"type": kind, "nullable": True, "enum": [None]}]


def _non_null(schema: dict) -> dict:
    """The value branch of an :func:`or_null` pair, with the pair's own keys (a query
    parameter is given or left out, never null)."""
    branches = [item for item in schema.get("anyOf", []) if item.get("enum") != [None]]
    if len(branches) != 1 or len(schema["anyOf"]) != 2:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**{key: value for key, value in branches[0].items() if key != "title"}, **rest}


def _not_nullable(parameter: dict) -> None:
    """A query parameter is left out or given, never null (a ``load_default=None``
    field says nullable): say so, or generators invent union types for it."""
    schema = parameter.get("schema") if isinstance(parameter, dict) else None
    if not isinstance(schema, dict) or parameter.get("in") != "query":
        return
    if "anyOf" in schema:
        schema = parameter["schema"] = _non_null(schema)
    if isinstance(schema.get("items"), dict) and "anyOf" in schema["items"]:
        schema["items"] = _non_null(schema["items"])
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    for node in (schema, schema.get("items")):
        if isinstance(node, dict):
            node.pop("nullable", None)
            if isinstance(node.get("enum"), list):
                node["enum"] = [value for value in node["enum"] if value is not None]


def _description(operation: dict) -> str:
    """The docstring's body (flask-smorest put its first line in the summary), who
    may call the operation, and the error slugs it answers with."""
    # The summary is shown next to it: the description adds to it rather than repeat it.
    parts = [operation["description"]] if operation.get("description") else []
    security = operation.get("security")
    if security == []:
        parts.append("Public: no token needed.")
    elif {} in security:
        parts.append("Public; with an access token (`Authorization: Bearer …`) the answer is the caller's view.")
    else:
        parts.append("Needs an access token (`Authorization: Bearer …`).")
    errors = []
    for code, response in sorted(operation.get("responses", {}).items(), key=lambda item: str(item[0])):
        if str(code).isdigit() and int(code) >= 400:
            described = response.get("description") if isinstance(response, dict) else None
            slugs = slugs_in(described) or [_default_slug(int(code))]
            errors.append(f"{code} " + ", ".join(f"`{slug}`" for slug in slugs))
    if errors:
        parts.append("Errors (the `error` field): " + "; ".join(errors) + ".")
    return "\n\n".join(part for part in parts if part)


def _default_slug(code: int) -> str:
    from app.errors import STATUS_SLUGS

    return STATUS_SLUGS.get(code, "error")


# OpenAPI links: how the answer of one operation feeds the next in a real flow —
# a wish posted, claimed, done and confirmed (and each one read back). Clients'
# generators and schemathesis's stateful phase follow them.
LINKS: dict[tuple[str, str], dict[str, dict]] = {
    ("create_posting", "201"): {
        "ClaimIt": {"operationId": "claim_posting", "parameters": {"posting_id": "$response.body#/id"}},
        "ReadIt": {"operationId": "get_posting", "parameters": {"posting_id": "$response.body#/id"}},
    },
    ("claim_posting", "201"): {
        "FulfilIt": {"operationId": "fulfil_claim", "parameters": {"claim_id": "$response.body#/id"}},
        "ReadIt": {"operationId": "get_claim", "parameters": {"claim_id": "$response.body#/id"}},
    },
    ("fulfil_claim", "200"): {
        "ConfirmIt": {"operationId": "confirm_claim", "parameters": {"claim_id": "$response.body#/id"}},
    },
    ("confirm_claim", "200"): {
        "ReadIt": {"operationId": "get_claim", "parameters": {"claim_id": "$response.body#/id"}},
    },
}


def _either(*names: str) -> dict:
    return {"anyOf": [{"required": [name]} for name in names]}


def _not_one_of(first: str, second: str) -> list[dict]:
    """The shapes of a body without exactly one of ``first`` and ``second``: both, or neither."""
    return [{"required": [first, second]}, {"not": _either(first, second)}]


def _kinds_needing_an_org() -> dict:
    """A kind its org's coordinators post (app.policy) without an org_id, or with a null one:
    422 (app.services.permissions, for those who may post it)."""
    from app.policy import COORDINATORS, kinds_where

    return {
        "required": ["kind"],
        "properties": {"kind": {"enum": list(kinds_where(posted_by=COORDINATORS))}},
        "anyOf": [
            {"not": {"required": ["org_id"]}},
            {"required": ["org_id"], "properties": {"org_id": {"enum": [None]}}},
        ],
    }


# Rules of a whole body that no single field states (the schemas' validates_schema),
# as the shapes a body may not take (``not``: code generators keep the body one
# model, where a ``oneOf`` would make it a union).
SCHEMA_RULES: dict[str, Callable[[], dict]] = {
    # LoginSchema.one_identifier: the phone or the email, the password or (with the phone) an SMS code
    "Login": lambda: {
        "not": {
            "anyOf": [
                *_not_one_of("phone", "email"),
                *_not_one_of("password", "sms_code"),
                {"required": ["email", "sms_code"]},
            ]
        }
    },
    # HonorRecordCreateSchema.one_of_each: volunteer_id or user_id, minutes or hours
    "HonorRecordCreate": lambda: {
        "not": {"anyOf": [*_not_one_of("volunteer_id", "user_id"), *_not_one_of("minutes", "hours")]}
    },
    # DeletionSchema.one_proof: the password or an SMS code
    "Deletion": lambda: {"not": {"anyOf": _not_one_of("password", "sms_code")}},
    "PostingCreate": lambda: {"not": _kinds_needing_an_org()},
}


def _text_without_nul(schema: dict) -> None:
    """What a client sends: a text with no shape of its own (no pattern, enum or
    format) gets :data:`NO_NUL`; a date or a time, its years (2000-2100)."""
    from mobile_api.fields import DATE_PATTERN, NO_NUL, YEARS_MARK, YEARS_PATTERN

    target = schema.get("items", {}) if schema.get("type") == "array" else schema
    if target.get("type") != "string" or "pattern" in target:
        return
    if target.pop(YEARS_MARK, False):
        target["pattern"] = DATE_PATTERN if target.get("format") == "date" else YEARS_PATTERN
    elif not {"enum", "format"} & set(target):
        target["pattern"] = NO_NUL


def _no_nul(document: dict, inputs: set[str], outputs: set[str]) -> None:
    """Texts a request sends never hold a NUL (app.inputs for the path and query: 400;
    BaseSchema for a body's texts: 422)."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in inputs - outputs:  # a schema also answered may hold older dates
        for prop in (schemas[name].get("properties") or {}).values():
            if isinstance(prop, dict) and not prop.get("readOnly"):
                _text_without_nul(prop)
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") not in ("query", "path"):
                    continue
                _text_without_nul(parameter.get("schema") or {})


def _drop_marks(node) -> None:
    """The years mark wherever it was not turned into a pattern (answers)."""
    from mobile_api.fields import YEARS_MARK

    if isinstance(node, dict):
        node.pop(YEARS_MARK, None)
        for value in node.values():
            _drop_marks(value)
    elif isinstance(node, list):
        for value in node:
            _drop_marks(value)


def _add_links(document: dict) -> None:
    operations = {
        operation.get("operationId"): operation
        for item in document.get("paths", {}).values()
        for method, operation in item.items()
        if isinstance(operation, dict) and method != "parameters"
    }
    for (operation_id, code), links in LINKS.items():
        operations[operation_id]["responses"][code]["links"] = links


def finalize(spec, plugin: GeneratorPlugin) -> None:
    """Once every blueprint is in the document: the bearer-token scheme; a field of a
    response-only schema is ``required`` (always present) unless marked optional;
    the envelope's ``error`` lists every slug. Schemas that are also read from
    requests keep their own ``required`` (what a request must hold)."""
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    document = spec.to_dict()
    schemas = document.get("components", {}).get("schemas", {})
    inputs: set[str] = set()
    outputs: set[str] = set()
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            _collect(operation.get("requestBody"), schemas, inputs)
            _collect(operation.get("parameters"), schemas, inputs)
            for code, response in operation.get("responses", {}).items():
                if str(code).startswith("2"):
                    _collect(response, schemas, outputs)
    for name in sorted(outputs - inputs):
        schema = schemas[name]
        properties = schema.get("properties") or {}
        optional = plugin.optional_fields.get(name, set())
        required = [key for key in properties if key not in optional]
        if required:
            schema["required"] = required
    error = schemas.get("Error")
    if error is not None:
        error["properties"]["error"]["enum"] = error_slugs()
    _add_links(document)
    _no_nul(document, inputs, outputs)
    _drop_marks(document)
    for name, rules in SCHEMA_RULES.items():
        schemas[name].update(rules())


def _collect(node, schemas: dict, found: set[str]) -> None:
    """The component schemas ``node`` refers to, directly or through others."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in found and name in schemas:
                found.add(name)
                _collect(schemas[name], schemas, found)
        for value in node.values():
            _collect(value, schemas, found)
    elif isinstance(node, list):
        for value in node:
            _collect(value, schemas, found)
