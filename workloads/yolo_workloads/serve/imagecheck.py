"""Cheap checks of encoded images before they are queued: format, size, truncation.

Reading the width and height from the header costs microseconds and lets the server refuse a bad or huge image
with a precise 4xx before it takes a place in a batch (and before a decoder allocates memory for it). Pure Python:
no torch here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carrying height/width (all SOFn except DHT c4, JPG c8, DAC cc).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(ValueError):
    """An input a client must fix; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "jpeg" or "png"
    width: int
    height: int


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageError("corrupt JPEG: bad marker in header")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise ImageError("truncated or corrupt JPEG: no frame header found")


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Identify a JPEG/PNG and its size, or raise ImageError saying what is wrong."""
    if not data:
        raise ImageError("empty body: expected a JPEG or PNG image")
    if data.startswith(JPEG_MAGIC):
        width, height = _jpeg_size(data)
        # A complete JPEG ends with the end-of-image marker (some writers pad with zeros after it).
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise ImageError("truncated JPEG: no end-of-image marker")
        fmt = "jpeg"
    elif data.startswith(PNG_MAGIC):
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise ImageError("truncated or corrupt PNG: no IHDR chunk")
        width, height = struct.unpack(">II", data[16:24])
        if not data.endswith(b"IEND\xaeB`\x82"):
            raise ImageError("truncated PNG: no IEND chunk")
        fmt = "png"
    else:
        raise ImageError("not an image: expected JPEG or PNG bytes", status=415)
    if width <= 0 or height <= 0:
        raise ImageError(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} (max_image_pixels)",
            status=413,
        )
    return ImageInfo(fmt, width, height)
