"""Builds PNG and JPEG headers byte by byte, for every PNG colour type and bit depth the format allows.

Pillow and OpenCV write only some of them (no 16-bit RGB from Pillow, no 2-bit grey from either); the serving
tests need all, and also headers that lie (a bit depth the colour type forbids, a 12-bit JPEG frame).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> samples per pixel as stored, allowed bit depths
COLOUR_TYPES: dict[int, tuple[int, tuple[int, ...]]] = {
    0: (1, (1, 2, 4, 8, 16)),
    2: (3, (8, 16)),
    3: (1, (1, 2, 4, 8)),
    4: (2, (8, 16)),
    6: (4, (8, 16)),
}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def row_bytes(width: int, colour: int, depth: int) -> int:
    return (width * COLOUR_TYPES[colour][0] * depth + 7) // 8


def png(width: int, height: int, colour: int, depth: int, rows: bytes | None = None) -> bytes:
    """A PNG of raw (unfiltered) row bytes; zeros when `rows` is None. Palette images get a 256-entry grey
    palette so every index is valid."""
    stride = row_bytes(width, colour, depth)
    raw = rows if rows is not None else bytes(stride * height)
    assert len(raw) == stride * height, (len(raw), stride * height)
    scan = b"".join(b"\x00" + raw[y * stride : (y + 1) * stride] for y in range(height))
    out = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    if colour == 3:
        out += chunk(b"PLTE", bytes(v for i in range(256) for v in (i, i, i)))
    return out + chunk(b"IDAT", zlib.compress(scan, 6)) + chunk(b"IEND", b"")


def png16_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of uint16 HxWx3 pixels."""
    h, w, _ = pixels.shape
    return png(w, h, 2, 16, pixels.astype(">u2").tobytes())


def jpeg_frame(width: int, height: int, precision: int = 8, components: int = 3) -> bytes:
    """The header of a baseline JPEG with the given frame (SOF0) and an end-of-image marker: enough for the
    header check, not a decodable image."""
    sof = struct.pack(">BHHB", precision, height, width, components) + b"".join(
        bytes((i + 1, 0x11, 0)) for i in range(components)
    )
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"
