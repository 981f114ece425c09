"""Photos (照片): uploads, and a photo as the API shows it."""

from __future__ import annotations

from flask_babel import gettext
from marshmallow import ValidationError, fields, validate

from app.policy import (
    DISPLAY_LONGEST_SIDE,
    MAX_PHOTO_BYTES,
    MAX_PHOTOS,
    PHOTO_CONTENT_TYPES,
    PHOTO_PURPOSES,
    PHOTO_URL_TTL,
    THUMB_LONGEST_SIDE,
    UPLOAD_URL_TTL,
)
from app.services.photos import display_key, thumb_key
from app.storage import download_url
from mobile_api.fields import BaseSchema, Id, UTCDateTime

_HOUR = int(PHOTO_URL_TTL.total_seconds() // 3600)


class PhotoSchema(BaseSchema):
    """A photo: short-lived URLs of its display size and its thumbnail."""

    id = fields.Integer()
    url = fields.Function(
        lambda photo: download_url(display_key(photo)),
        metadata={
            "type": "string",
            "description": f"The display size (longest side at most {DISPLAY_LONGEST_SIDE} px), "
            f"a presigned GET that works for about {_HOUR} hour: fetch the object again for a new one.",
        },
    )
    thumb_url = fields.Function(
        lambda photo: download_url(thumb_key(photo)),
        metadata={"type": "string", "description": f"The thumbnail (longest side at most {THUMB_LONGEST_SIDE} px)."},
    )
    width = fields.Integer(metadata={"description": "Of the display size, in pixels."})
    height = fields.Integer(metadata={"description": "Of the display size, in pixels."})


class StorySchema(BaseSchema):
    """A finished wish as everyone sees it (微故事): the fulfilment's note and photos."""

    note = fields.String(allow_none=True)
    photos = fields.List(fields.Nested(PhotoSchema))


def _each_once(value: list[int]) -> None:
    if len(set(value)) != len(value):
        raise ValidationError(gettext("Each photo may appear once."))


def photo_ids_field(purpose: str, **kwargs) -> fields.List:
    """``photo_ids``: at most MAX_PHOTOS of the caller's own uploads for ``purpose``."""
    return fields.List(
        Id(),
        validate=[validate.Length(max=MAX_PHOTOS), _each_once],
        metadata={
            "uniqueItems": True,
            "description": f"At most {MAX_PHOTOS} photo ids from POST /api/v1/uploads (purpose {purpose}), "
            "your own, each once, in the order to show them; each is checked when first used.",
        },
        **kwargs,
    )


class UploadCreateSchema(BaseSchema):
    purpose = fields.String(required=True, validate=validate.OneOf(PHOTO_PURPOSES))
    content_type = fields.String(required=True, validate=validate.OneOf(PHOTO_CONTENT_TYPES))
    size = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_PHOTO_BYTES),
        metadata={"description": f"The file's length in bytes, at most {MAX_PHOTO_BYTES} (10 MiB)."},
    )


class UploadTargetSchema(BaseSchema):
    method = fields.String(metadata={"enum": ["PUT"]})
    url = fields.String(metadata={"description": "Send the bytes here (to the object storage, not the API)."})
    headers = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Send exactly these headers with the bytes (Content-Type)."},
    )


class UploadSchema(BaseSchema):
    photo_id = fields.Integer()
    upload = fields.Nested(UploadTargetSchema)
    expires_at = UTCDateTime(
        metadata={"description": f"The upload URL works until then ({int(UPLOAD_URL_TTL.total_seconds() // 60)} min)."}
    )
