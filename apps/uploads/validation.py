"""Image checks: the type is sniffed from the bytes and the whole image is decoded once.

Nothing the client says (content type, extension) is trusted. The pixel count is read from the
header before any decoding, so a decompression bomb is refused without allocating its pixels.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, UnidentifiedImageError

SUPPORTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
SUPPORTED_NAMES = "JPEG, PNG or WebP"


class ImageRejected(ValueError):
    """The file is not an image we accept; the message says why, for the user."""


@dataclass(frozen=True)
class ImageFacts:
    format: str
    content_type: str
    extension: str
    width: int
    height: int
    size: int
    sha256: str


def image_inspect(stream: IO[bytes], *, max_pixels: int) -> ImageFacts:
    """Check one uploaded file and return what we store about it; raises ImageRejected."""
    size, digest = _size_and_digest(stream)
    if size == 0:
        raise ImageRejected("file is empty")
    stream.seek(0)
    with warnings.catch_warnings():
        # Our own pixel limit (below) is checked before decoding; Pillow's warning is noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(stream) as image:
                if image.format not in SUPPORTED_FORMATS:
                    raise ImageRejected(
                        f"unsupported image format {image.format}; use {SUPPORTED_NAMES}"
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"image is {width}x{height} pixels; at most "
                        f"{max_pixels / 1e6:g} megapixels are accepted"
                    )
                _decode_fully(image)
                image_format = image.format
        except Image.DecompressionBombError:
            raise ImageRejected("image has too many pixels (decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageRejected(f"not a supported image ({SUPPORTED_NAMES})") from None
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, ImageRejected):
                raise
            raise ImageRejected("image data is corrupt or truncated") from None
    content_type, extension = SUPPORTED_FORMATS[image_format]
    return ImageFacts(image_format, content_type, extension, width, height, size, digest)


def _decode_fully(image: Image.Image) -> None:
    # A truncated file is only found by decoding all of it. JPEG can decode at 1/8 scale, which
    # still reads every byte but needs 1/64 of the memory.
    if image.format == "JPEG":
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _size_and_digest(stream: IO[bytes]) -> tuple[int, str]:
    stream.seek(0)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: stream.read(1024 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()
