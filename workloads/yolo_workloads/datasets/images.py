"""Which files of a data set are images, and which of them Ultralytics would drop as corrupt.

Ultralytics' label scan (`verify_image_label`, `check_image`) drops an image it cannot open, one under 10 px a side
or one whose content is a format it does not take, with a warning in its log, and trains on without it; the
operator refuses such a set before any GPU time instead, naming the image (datasets/validate.py). Only headers are
read: ~40 us an image.
"""

from __future__ import annotations

import sys
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".avif", ".bmp", ".dng", ".heic", ".heif", ".jp2", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"}
)
"""The files Ultralytics takes for images (its `IMG_FORMATS`; a workloads test keeps them equal)."""
PLUGIN_FORMATS = frozenset({".heic", ".heif"})
"""Read by Ultralytics only through the pi-heif plugin, which it would install from the network: not in the image."""

IMAGE_FORMATS = frozenset(s[1:] for s in IMAGE_SUFFIXES) | {"jpeg2000"}
"""Pillow's format names Ultralytics takes, whatever the file's suffix (`check_image`: a GIF named .jpg is dropped)."""

MIN_IMAGE_SIDE = 10
"""Ultralytics drops an image smaller than this a side as corrupt (`verify_image_label`)."""


def image_problem(path: Path) -> str | None:
    """Why Ultralytics would drop this image as corrupt (None: it reads it). Only the header is read."""
    from PIL import Image

    # Ultralytics replaces Image.open with one that, on an unknown format, looks for an optional HEIF plugin and
    # fails on its absence instead: the original says what is wrong with the file.
    opener = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", Image.open)
    try:
        with opener(path) as im:
            (w, h), kind = im.size, str(im.format or "").lower()
    except Exception as e:  # Pillow raises several kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
        said = str(e).replace(f" '{path}'", "").replace(str(path), "the file")  # the path is said once, first
        if path.suffix.lower() in PLUGIN_FORMATS:
            said += "; HEIC/HEIF needs a plugin this image lacks: convert to JPEG or PNG"
        return f"not an image Pillow can read ({said or type(e).__name__})"
    if w < MIN_IMAGE_SIDE or h < MIN_IMAGE_SIDE:
        return f"{w}x{h} px (Ultralytics needs at least {MIN_IMAGE_SIDE} px a side)"
    if kind not in IMAGE_FORMATS:
        takes = ", ".join(sorted(IMAGE_FORMATS))
        return f"a {kind.upper() or 'nameless'} image by its content (Ultralytics takes {takes})"
    return None
