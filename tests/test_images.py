"""app/images.py: what is published of an upload is its pixels, upright, and nothing else."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms

from app import images
from app.policy import DISPLAY_LONGEST_SIDE, MAX_PHOTO_PIXELS, THUMB_LONGEST_SIDE
from tests.factories import photo_bytes

BOUNDS = {"max_pixels": MAX_PHOTO_PIXELS, "display_side": DISPLAY_LONGEST_SIDE, "thumb_side": THUMB_LONGEST_SIDE}


def render(data: bytes, content_type: str = "image/jpeg", **bounds) -> images.Renditions:
    return images.render(data, content_type, **{**BOUNDS, **bounds})


def opened(rendition: images.Rendition) -> Image.Image:
    picture = Image.open(io.BytesIO(rendition.data))
    assert picture.size == (rendition.width, rendition.height)
    return picture


def encoded(picture: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp"])
def test_every_type_comes_out_in_its_own_format_with_no_metadata(content_type):
    source = photo_bytes(content_type, (2000, 1500))
    assert b"YZ Phone" in source  # the EXIF the phone wrote
    rendered = render(source, content_type)
    for rendition, size in ((rendered.display, (1600, 1200)), (rendered.thumb, (320, 240))):
        picture = opened(rendition)
        assert picture.format == images.FORMATS[content_type]
        assert picture.size == size
        assert not picture.getexif()
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "icc_profile"} & set(picture.info)
        assert b"YZ Phone" not in rendition.data and b"Exif\x00\x00" not in rendition.data


@pytest.mark.parametrize(
    ("orientation", "dark_at", "light_at"),
    [
        (3, (10, 590), (10, 10)),  # upside down: the dark top edge ends at the bottom
        (6, (790, 10), (10, 10)),  # turned 90° clockwise: at the right
        (8, (10, 10), (790, 10)),  # turned 90° counter-clockwise: at the left
    ],
)
def test_a_picture_is_turned_upright_by_its_exif_orientation(orientation, dark_at, light_at):
    source = photo_bytes(size=(800, 600) if orientation == 3 else (600, 800), orientation=orientation)
    picture = opened(render(source).display).convert("L")
    assert picture.size == (800, 600)
    assert picture.getpixel(dark_at) < 40 < 200 < picture.getpixel(light_at)


def test_small_pictures_are_not_enlarged():
    rendered = render(photo_bytes(size=(200, 100)))
    assert (rendered.display.width, rendered.display.height) == (200, 100)
    assert (rendered.thumb.width, rendered.thumb.height) == (200, 100)


def test_transparency_survives_where_the_format_has_it():
    glass = Image.new("RGBA", (400, 300), (255, 0, 0, 0))
    glass.paste((0, 0, 255, 255), (100, 100, 300, 200))
    png = opened(render(encoded(glass, "PNG"), "image/png").display)
    assert png.mode == "RGBA" and png.getpixel((5, 5))[3] == 0
    webp = opened(render(encoded(glass, "WEBP", lossless=True), "image/webp").display)
    assert webp.mode == "RGBA" and webp.getpixel((5, 5))[3] == 0


def test_cmyk_and_grey_and_16_bit_pictures_come_out_as_ordinary_ones():
    cmyk = opened(render(encoded(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG")).display)
    assert cmyk.mode == "RGB" and cmyk.getpixel((10, 10))[0] > 200  # red stays red
    grey = opened(render(encoded(Image.new("L", (300, 200), 128), "JPEG")).display)
    assert grey.mode == "L"
    deep = Image.new("I;16", (300, 200), 40000)
    wide = opened(render(encoded(deep, "PNG"), "image/png").display)
    assert wide.mode == "L" and 150 < wide.getpixel((5, 5)) < 160  # 40000/65535 of white, not clipped


def test_a_colour_profile_is_applied_then_dropped_and_a_broken_one_ignored():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture = Image.new("RGB", (300, 200), (10, 200, 30))
    for profile in (srgb, b"not an ICC profile at all"):
        out = opened(render(encoded(picture, "JPEG", icc_profile=profile, quality=95)).display)
        assert "icc_profile" not in out.info
        assert abs(out.getpixel((150, 100))[1] - 200) < 8


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"", "image/jpeg"),
        (b"GIF89a" + b"\x00" * 100, "image/jpeg"),
        (photo_bytes("image/jpeg"), "image/png"),
        (photo_bytes("image/png"), "image/webp"),
        (photo_bytes("image/jpeg")[:-1000], "image/jpeg"),
        (photo_bytes("image/jpeg"), "image/gif"),
    ],
    ids=["empty", "gif", "jpeg-as-png", "png-as-webp", "truncated", "not-a-photo-type"],
)
def test_what_is_not_a_whole_picture_of_its_type_is_refused(data, content_type):
    with pytest.raises(images.BadImage):
        render(data, content_type)


def test_too_many_pixels_are_refused_before_any_is_decoded():
    bomb = encoded(Image.new("1", (9000, 9000)), "PNG")  # 81 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    with pytest.raises(images.BadImage, match="pixels"):
        render(bomb, "image/png")
    with pytest.raises(images.BadImage, match="pixels"):
        render(photo_bytes(size=(1000, 1000)), max_pixels=999_999)
