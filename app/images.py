"""What the server publishes of an uploaded photo: checked, re-encoded, without metadata.

A phone's photo is whatever bytes it sent under a content type it declared.
:func:`render` reads them with Pillow as that format only (a PNG declared as
``image/jpeg`` is refused), refuses a picture of more than ``max_pixels``
before decoding a single pixel (a decompression bomb: a few kilobytes that
claim 30,000 × 30,000), decodes it, turns it upright by its EXIF
orientation, converts its colours to sRGB, and writes two new files from the
pixels alone: the display size and the thumbnail. Nothing else of the
upload survives — no EXIF (above all no GPS position of a resident's home),
no XMP, no comments, no colour profile — because nothing else is copied.

A JPEG is decoded at the smallest scale that still covers the display size
(libjpeg's DCT scaling, ``Image.draft``): a 12-megapixel photo is read as 3
megapixels, a quarter of the memory and less decoding (bench/photos.py). At most
:data:`DECODES_AT_ONCE` pictures are decoded at once in a process, so a burst
of uploads cannot take a web worker's memory with it.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# The content types the API takes, as Pillow's format names and file extensions.
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
# Pictures decoded at the same time in one process (each may hold tens of megabytes).
DECODES_AT_ONCE = 2
_decoding = threading.BoundedSemaphore(DECODES_AT_ONCE)
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
JPEG_QUALITY = 85
WEBP_QUALITY = 82
# Everything Pillow may raise on bytes that are not a whole, sane picture.
_UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError)


class BadImage(ValueError):
    """The bytes are not a picture of the declared type that may be published."""


@dataclass(frozen=True)
class Rendition:
    """One file written from a photo's pixels."""

    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Renditions:
    display: Rendition
    thumb: Rendition


def render(data: bytes, content_type: str, *, max_pixels: int, display_side: int, thumb_side: int) -> Renditions:
    """The display size (longest side at most ``display_side``) and the thumbnail
    (at most ``thumb_side``) of the picture in ``data``, both in the declared
    format and free of metadata; :class:`BadImage` when ``data`` is not a picture
    of ``content_type`` or holds more than ``max_pixels``."""
    fmt = FORMATS.get(content_type)
    if fmt is None:
        raise BadImage(f"{content_type} is not a photo type")
    with _decoding, warnings.catch_warnings():
        # Pillow only warns between its own limit and twice it: refuse there too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = _decode(data, fmt, max_pixels, display_side)
        except BadImage:
            raise
        except Image.DecompressionBombWarning as exc:
            raise BadImage(f"too many pixels: {exc}") from None
        except _UNREADABLE as exc:
            raise BadImage(f"not a readable {fmt} picture ({type(exc).__name__})") from None
    display = _fit(picture, display_side)
    thumb = _fit(display, thumb_side)
    return Renditions(_encode(display, fmt), _encode(thumb, fmt))


def _decode(data: bytes, fmt: str, max_pixels: int, display_side: int) -> Image.Image:
    """The picture's pixels, upright, in sRGB, as RGB(A) or L."""
    picture = Image.open(io.BytesIO(data), formats=[fmt])
    width, height = picture.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise BadImage(f"{width}x{height} is more than {max_pixels} pixels")
    if fmt == "JPEG":
        picture.draft(picture.mode, _fitted_size(width, height, display_side))
    picture.load()  # a cut-off upload fails here (LOAD_TRUNCATED_IMAGES stays off): refused, never half shown
    icc = picture.info.get("icc_profile")
    picture = ImageOps.exif_transpose(picture)
    picture = _plain_mode(picture)
    if icc:
        picture = _to_srgb(picture, icc)
    picture.info = {}
    return picture


def _plain_mode(picture: Image.Image) -> Image.Image:
    """RGB, RGBA (when it has transparency) or L (grey)."""
    mode = picture.mode
    if mode in ("RGB", "RGBA", "L"):
        return picture
    if mode.startswith("I") or mode == "F":
        # 16-bit or float grey (a scientific PNG): scale to 8 bits rather than clip
        picture = picture.convert("I").point(lambda value: value * (1 / 256)).convert("L")
        return picture
    if mode in ("LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in picture.info):
        return picture.convert("RGBA")
    return picture.convert("RGB")


def _to_srgb(picture: Image.Image, icc: bytes) -> Image.Image:
    """The colours as sRGB (what every screen assumes without a profile); a
    profile that cannot be read leaves them as they are."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if picture.mode == "L":
            picture = picture.convert("RGB")
        return ImageCms.profileToProfile(picture, source, _SRGB, outputMode=picture.mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return picture


def _fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fit(picture: Image.Image, side: int) -> Image.Image:
    size = _fitted_size(*picture.size, side)
    if size == picture.size:
        return picture
    resized = picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    resized.info = {}
    return resized


def _encode(picture: Image.Image, fmt: str) -> Rendition:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        if picture.mode == "RGBA":
            picture = picture.convert("RGB")
        picture.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    elif fmt == "WEBP":
        picture.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    else:
        picture.save(buffer, "PNG", compress_level=6)
    return Rendition(buffer.getvalue(), picture.width, picture.height)
