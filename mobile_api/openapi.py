"""What the OpenAPI document says about errors: the one envelope of API.md,
on every error response an operation declares."""

from __future__ import annotations

from apispec import BasePlugin
from marshmallow import Schema, fields

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
