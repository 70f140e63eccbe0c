"""Cheap checks of encoded images before they are queued: format, size, bit depth, channels, truncation.

Reading the header costs microseconds and lets the server refuse a bad or huge image with a precise 4xx before it
takes a place in a batch, and before a decoder allocates memory for it: the header says how many bytes the decoded
pixels will take (`ImageInfo.decoded_bytes`), which is what the server's memory budgets count. Images the decoder
would not turn into plain 8-bit RGB (12-bit JPEG, unknown PNG colour types or bit depths) are refused here, naming
the cause. Pure Python: no torch here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
# Start-of-frame markers carrying height/width (all SOFn except DHT c4, JPG c8, DAC cc).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# PNG colour type -> (name, channels the decoder returns before RGB conversion, allowed bit depths).
_PNG_COLOUR: dict[int, tuple[str, int, tuple[int, ...]]] = {
    0: ("grayscale", 1, (1, 2, 4, 8, 16)),
    2: ("RGB", 3, (8, 16)),
    3: ("palette", 3, (1, 2, 4, 8)),
    4: ("grayscale+alpha", 2, (8, 16)),
    6: ("RGBA", 4, (8, 16)),
}
_JPEG_CHANNELS = {1: "grayscale", 3: "YCbCr", 4: "CMYK"}
RGB_CHANNELS = 3


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
    channels: int = RGB_CHANNELS  # what the decoder produces before conversion to RGB
    bit_depth: int = 8  # bits per sample as stored

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the pixel buffer decoding makes: at least 3 channels (grey is expanded, alpha read), at the
        stored sample size (a 16-bit PNG decodes to 16-bit samples before it is scaled to 8 bits)."""
        sample_bytes = 2 if self.bit_depth > 8 else 1
        return self.width * self.height * max(self.channels, RGB_CHANNELS) * sample_bytes


def _jpeg_frame(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, precision, components) from the first start-of-frame segment."""
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
            if i + 10 > n:
                break
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height, precision, data[i + 9]
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise ImageError("truncated or corrupt JPEG: no frame header found")


def _jpeg_info(data: bytes) -> ImageInfo:
    width, height, precision, components = _jpeg_frame(data)
    # A complete JPEG ends with the end-of-image marker (some writers pad with zeros after it).
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageError("truncated JPEG: no end-of-image marker")
    if precision != 8:
        raise ImageError(f"{precision}-bit JPEG not supported: send 8-bit JPEG or PNG", status=415)
    if components not in _JPEG_CHANNELS:
        raise ImageError(f"JPEG with {components} colour components not supported: send grayscale, RGB or CMYK", 415)
    return ImageInfo("jpeg", width, height, components, precision)


def _png_info(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageError("truncated or corrupt PNG: no IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not data.endswith(PNG_END):
        raise ImageError("truncated PNG: no IEND chunk")
    if colour not in _PNG_COLOUR:
        raise ImageError(f"corrupt PNG: unknown colour type {colour}")
    name, channels, depths = _PNG_COLOUR[colour]
    if depth not in depths:
        raise ImageError(f"corrupt PNG: bit depth {depth} is not valid for {name} (allowed {depths})")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise ImageError("corrupt PNG: unknown compression, filter or interlace method")
    return ImageInfo("png", width, height, channels, depth)


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Identify a JPEG/PNG, its size, channels and bit depth, or raise ImageError saying what is wrong."""
    if not data:
        raise ImageError("empty body: expected a JPEG or PNG image")
    if data.startswith(JPEG_MAGIC):
        info = _jpeg_info(data)
    elif data.startswith(PNG_MAGIC):
        info = _png_info(data)
    else:
        raise ImageError("not an image: expected JPEG or PNG bytes", status=415)
    width, height = info.width, info.height
    if width <= 0 or height <= 0:
        raise ImageError(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} (max_image_pixels)",
            status=413,
        )
    return info
