"""Cover images: checked by content, turned upright, and rendered as a 96 px thumbnail and a ~1000 px display WebP.

Accepted: JPEG, PNG, WebP and GIF (an animated GIF keeps its animation in the original; renditions use frame one).
A JPEG carrying EXIF is re-encoded upright without it: phone photos put GPS positions there, and the original is public.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from plyrd.errors import TooLarge, Unprocessable, UnsupportedMedia
from plyrd.media.probe import describe_bytes

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000  # a 50 MP decode is ~200 MB as RGBA; phone cameras stay well below
THUMB_SIDE = 96
DISPLAY_SIDE = 1000

# Kind by magic number -> (Pillow format, MIME type, extension).
_KINDS = {
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "png": ("PNG", "image/png", "png"),
    "webp": ("WEBP", "image/webp", "webp"),
    "gif": ("GIF", "image/gif", "gif"),
}
_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


@dataclass(frozen=True)
class Artwork:
    original_bytes: bytes  # what to store and serve as the original (the upload, or its upright EXIF-free JPEG)
    original_mime: str
    extension: str  # for the original, without a dot
    width: int  # upright size of the original
    height: int
    thumb_webp: bytes  # longest side THUMB_SIDE (smaller images are not enlarged)
    thumb_size: tuple[int, int]
    display_webp: bytes  # longest side DISPLAY_SIDE
    display_size: tuple[int, int]


def image_kind(data: bytes) -> str | None:
    """jpeg, png, webp or gif from the magic number, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def process_image(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Artwork:
    """Validate an uploaded image and make its renditions.

    Raises UnsupportedMedia (not JPEG/PNG/WebP/GIF, naming what it is), TooLarge (over `max_bytes`, or over
    `max_pixels`, which is how decompression bombs are refused before decoding) or Unprocessable (corrupt).
    """
    if not data:
        raise UnsupportedMedia("The image is empty (0 bytes).")
    if len(data) > max_bytes:
        raise TooLarge(f"The image is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    kind = image_kind(data)
    if kind is None:
        raise UnsupportedMedia(f"The file is {_describe(data)}; images must be JPEG, PNG, WebP or GIF.")
    pil_format, mime, extension = _KINDS[kind]
    try:
        # `formats` keeps Pillow to the decoder the magic number named (an MPO is a JPEG to it).
        im = Image.open(io.BytesIO(data), formats=[pil_format])
    except Image.DecompressionBombError as e:
        raise TooLarge(f"The image has too many pixels to process ({e}).") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise Unprocessable(f"The {pil_format} image could not be read: it is corrupt ({e}).") from e
    with im:
        width, height = im.size
        if width * height > max_pixels:  # checked on the header, before any pixel is decoded
            raise TooLarge(
                f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); "
                f"the limit is {max_pixels / 1e6:.0f} MP."
            )
        try:
            # Everything from here reads the file's bytes (EXIF included), so a truncated or corrupt file fails here.
            return _renditions(im, data, kind, mime, extension, width, height)
        except Image.DecompressionBombError as e:
            raise TooLarge(f"The image has too many pixels to process ({e}).") from e
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error) as e:
            raise Unprocessable(
                f"The {pil_format} image could not be decoded: it is truncated or corrupt ({e})."
            ) from e


def _renditions(im: Image.Image, data: bytes, kind: str, mime: str, extension: str, width: int,
                height: int) -> Artwork:
    exif = im.getexif()
    orientation = exif.get(_ORIENTATION, 1)
    reencode = kind == "jpeg" and (len(exif) > 0 or im.format == "MPO")
    if not reencode:
        # JPEG only: decode at a reduced scale (1/2..1/8) when that still covers the display size. Much faster.
        im.draft(None, (DISPLAY_SIDE, DISPLAY_SIDE))
    im.seek(0)  # the first frame of an animation
    im.load()
    upright = ImageOps.exif_transpose(im)
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    base = _to_rgb(upright)
    # A CMYK profile would mislabel the RGB pixels made from it; an RGB one (Display P3 from phones) must stay.
    icc = im.info.get("icc_profile") if im.mode != "CMYK" else None
    if reencode:
        original, original_mime, extension = _upright_jpeg(base, icc), "image/jpeg", "jpg"
    else:
        original, original_mime = data, mime
    display = base.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    thumb = display.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return Artwork(
        original_bytes=original,
        original_mime=original_mime,
        extension=extension,
        width=width,
        height=height,
        thumb_webp=_webp(thumb, quality=80),  # no profile: up to 3 KB on a 2 KB thumbnail, for a nuance
        thumb_size=thumb.size,
        display_webp=_webp(display, quality=82, icc_profile=icc),
        display_size=display.size,
    )


def _describe(data: bytes) -> str:
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "a HEIC/HEIF image (export it as JPEG)"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "an AVIF image"
    if data.lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return "an SVG/XML document"
    return describe_bytes(data[:64]) or "not an image plyrd recognises"


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has transparency (WebP keeps it)."""
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    mode = "RGBA" if has_alpha else "RGB"
    return im if im.mode == mode else im.convert(mode)


def _upright_jpeg(im: Image.Image, icc_profile: bytes | None) -> bytes:
    buf = io.BytesIO()
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    # No exif= argument: the EXIF block (GPS, camera serials, orientation) is dropped. The colour profile stays.
    rgb.save(buf, "JPEG", quality=95, optimize=True, icc_profile=icc_profile)
    return buf.getvalue()


def _webp(im: Image.Image, *, quality: int, icc_profile: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=quality, method=4, icc_profile=icc_profile)
    return buf.getvalue()
