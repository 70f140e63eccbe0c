"""Property tests of the inference server's input parsing: the v2 request parser and the image header check.

Whatever the bytes, each answers with a value or an ImageError carrying a 4xx (the server turns it into JSON);
any other exception would be a plain 500. Valid inputs are read exactly: tensors round-trip, headers report the
size, channels and bit depth the decoder then produces, and the budget (`decoded_bytes`) bounds what decoding
allocates.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pngmaker import COLOUR_TYPES, jpeg_frame, png, row_bytes
from torch.nn import functional as F  # noqa: N812
from torchvision.io import ImageReadMode, decode_image
from yolo_workloads.serve import pipeline, v2
from yolo_workloads.serve.imagecheck import JPEG_MAGIC, PNG_MAGIC, ImageError, inspect_image
from yolo_workloads.serve.pipeline import to_rgb8

pytestmark = pytest.mark.workloads
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _valid_doc(datatype: str = "UINT8") -> dict[str, Any]:
    data: list[Any] = [1, 2, 3, 4, 5, 6] if datatype == "UINT8" else [base64.b64encode(b"x").decode()]
    shape = [1, 1, 2, 3] if datatype == "UINT8" else [1]
    return {
        "id": "r",
        "parameters": {"binary_data_output": False},
        "inputs": [{"name": "images", "shape": shape, "datatype": datatype, "data": data, "parameters": {}}],
        "outputs": [{"name": "boxes", "parameters": {"binary_data": True}}],
    }


_PATHS: list[tuple[Any, ...]] = [
    ("id",),
    ("parameters",),
    ("parameters", "binary_data_output"),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0),
    ("inputs", 0, "datatype"),
    ("inputs", 0, "data"),
    ("inputs", 0, "data", 0),
    ("inputs", 0, "parameters"),
    ("inputs", 0, "parameters", "layout"),
    ("inputs", 0, "parameters", "binary_data_size"),
    ("outputs",),
    ("outputs", 0),
    ("outputs", 0, "name"),
    ("outputs", 0, "parameters"),
    ("outputs", 0, "parameters", "binary_data"),
]


def _parse(body: bytes, header: str | None = None, budget: int | None = None) -> v2.V2Request | None:
    """Parse; an ImageError must be a 4xx. Returns None when refused."""
    try:
        return v2.parse_request(body, header, budget)
    except ImageError as exc:
        assert 400 <= exc.status < 500
        return None


@PROPERTY
@given(datatype=st.sampled_from(["UINT8", "BYTES"]), path=st.sampled_from(_PATHS), value=json_values)
def test_any_field_of_any_type_is_a_value_or_a_4xx(datatype: str, path: tuple[Any, ...], value: Any) -> None:
    doc = _valid_doc(datatype)
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _parse(json.dumps(doc).encode())


@PROPERTY
@given(body=st.binary(max_size=300), header=st.none() | st.text(max_size=6) | st.integers(-5, 400).map(str))
def test_arbitrary_bytes_are_a_value_or_a_4xx(body: bytes, header: str | None) -> None:
    _parse(body, header)


@PROPERTY
@given(doc=json_values)
def test_arbitrary_json_documents_are_a_value_or_a_4xx(doc: Any) -> None:
    _parse(json.dumps(doc).encode())


@pytest.mark.parametrize("depth", [5, 100, 100_000])
def test_deep_nesting_is_a_400(depth: int) -> None:
    nested = "[" * depth + "1" + "]" * depth
    body = f'{{"inputs":[{{"name":"images","shape":[1,1,1,3],"datatype":"UINT8","data":{nested}}}]}}'
    with pytest.raises(ImageError) as err:
        v2.parse_request(body.encode(), None)
    assert err.value.status == 400


@PROPERTY
@given(
    n=st.integers(1, 2),
    h=st.integers(1, 4),
    w=st.integers(1, 4),
    nchw=st.booleans(),
    nested=st.booleans(),
    binary=st.booleans(),
    data=st.data(),
)
def test_uint8_tensors_round_trip(
    n: int, h: int, w: int, nchw: bool, nested: bool, binary: bool, data: st.DataObject
) -> None:
    pixels = np.array(data.draw(st.lists(st.integers(0, 255), min_size=n * h * w * 3, max_size=n * h * w * 3)))
    rgb = pixels.astype(np.uint8).reshape(n, 3, h, w) if nchw else pixels.astype(np.uint8).reshape(n, h, w, 3)
    shape = list(rgb.shape)
    inp: dict[str, Any] = {"name": "images", "shape": shape, "datatype": "UINT8"}
    inp["parameters"] = {"layout": "NCHW" if nchw else "NHWC"}
    tail = b""
    if binary:
        tail = rgb.tobytes()
        inp["parameters"]["binary_data_size"] = len(tail)
    else:
        inp["data"] = rgb.tolist() if nested else rgb.ravel().tolist()
    head = json.dumps({"inputs": [inp]}).encode()
    req = v2.parse_request(head + tail, str(len(head)) if binary else None)
    assert req.pixels is not None
    want = rgb if nchw else rgb.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(req.pixels, want)


@PROPERTY
@given(bad=st.integers().filter(lambda x: not 0 <= x <= 255) | st.floats() | st.text(max_size=3) | st.booleans())
def test_uint8_data_out_of_range_or_not_integer_is_a_400(bad: Any) -> None:
    doc = _valid_doc("UINT8")
    doc["inputs"][0]["data"][2] = bad
    if isinstance(bad, bool):  # numpy reads a JSON true inside integers as 1: accepted, not misread
        _parse(json.dumps(doc).encode())
        return
    with pytest.raises(ImageError) as err:
        v2.parse_request(json.dumps(doc).encode(), None)
    assert err.value.status == 400


@PROPERTY
@given(shape=st.lists(st.integers(1, 10**6), min_size=4, max_size=4).map(lambda s: [s[0], s[1], s[2], 3]))
def test_pixel_budget_is_checked_from_the_shape_before_the_data(shape: list[int]) -> None:
    budget = 10**6
    doc = {"inputs": [{"name": "images", "shape": shape, "datatype": "UINT8", "data": [0]}]}
    with pytest.raises(ImageError) as err:
        v2.parse_request(json.dumps(doc).encode(), None, budget)
    assert err.value.status == (413 if math.prod(shape) > budget else 400)


# -- image headers ------------------------------------------------------------------------------------------


@PROPERTY
@given(prefix=st.sampled_from([b"", JPEG_MAGIC, PNG_MAGIC, PNG_MAGIC + b"\x00\x00\x00\x0dIHDR"]), rest=st.binary())
def test_any_bytes_are_an_image_or_a_4xx(prefix: bytes, rest: bytes) -> None:
    try:
        info = inspect_image(prefix + rest, 10**6)
    except ImageError as exc:
        assert 400 <= exc.status < 500
        return
    assert info.width > 0 and info.height > 0 and info.decoded_bytes >= 3 * info.width * info.height


png_kinds = st.sampled_from([(c, d) for c, (_, depths) in COLOUR_TYPES.items() for d in depths])


@PROPERTY
@given(kind=png_kinds, w=st.integers(1, 24), h=st.integers(1, 24), data=st.data())
def test_every_png_kind_decodes_to_8bit_rgb_within_its_budget(
    kind: tuple[int, int], w: int, h: int, data: st.DataObject
) -> None:
    colour, depth = kind
    size = row_bytes(w, colour, depth) * h
    raw = data.draw(st.binary(min_size=size, max_size=size))
    encoded = png(w, h, colour, depth, raw)
    info = inspect_image(encoded, 10**6)
    assert (info.width, info.height, info.bit_depth) == (w, h, depth)
    decoded = decode_image(torch.frombuffer(bytearray(encoded), dtype=torch.uint8), mode=ImageReadMode.RGB)
    assert decoded.numel() * decoded.element_size() <= info.decoded_bytes, "the budget undercounts the decoder"
    rgb = to_rgb8(decoded)
    assert rgb.dtype == torch.uint8 and tuple(rgb.shape) == (3, h, w)


@PROPERTY
@given(values=st.lists(st.integers(0, 65535), min_size=1, max_size=64))
def test_16bit_samples_scale_to_the_nearest_8bit_value(values: list[int]) -> None:
    x = torch.tensor(values, dtype=torch.int32).to(torch.uint16).reshape(1, 1, -1).expand(3, 1, -1)
    got = to_rgb8(x)[0, 0].tolist()
    assert got == [round(v * 255 / 65535) for v in values]
    assert to_rgb8((x.to(torch.int32) // 257 * 257).to(torch.uint16))[0, 0].tolist() == [v // 257 for v in values]


@PROPERTY
@given(colour=st.integers(0, 255), depth=st.integers(0, 255))
def test_png_colour_type_and_bit_depth_are_checked(colour: int, depth: int) -> None:
    encoded = png(4, 4, 0, 8)
    encoded = encoded[:24] + bytes([depth, colour]) + encoded[26:]  # CRC no longer matches: the check ignores it
    valid = colour in COLOUR_TYPES and depth in COLOUR_TYPES[colour][1]
    if valid:
        assert inspect_image(encoded, 100).bit_depth == depth
        return
    with pytest.raises(ImageError, match=r"colour type|bit depth") as err:
        inspect_image(encoded, 100)
    assert err.value.status == 400


@PROPERTY
@given(precision=st.integers(0, 255), components=st.integers(0, 255))
def test_jpeg_precision_and_components_are_checked(precision: int, components: int) -> None:
    frame = jpeg_frame(8, 8, precision, components)
    if precision == 8 and components in (1, 3, 4):
        info = inspect_image(frame, 100)
        assert info.decoded_bytes == 64 * max(components, 3)
        return
    with pytest.raises(ImageError) as err:
        inspect_image(frame, 100)
    assert err.value.status == 415
    assert ("bit JPEG" in str(err.value)) or ("components" in str(err.value))


@PROPERTY
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    nh=st.integers(1, 120),
    nw=st.integers(1, 120),
    band=st.integers(1, 5000),
)
def test_banded_resize_equals_the_one_pass_resize_within_rounding(h: int, w: int, nh: int, nw: int, band: int) -> None:
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w + nh))
    old = pipeline.BAND_PIXELS
    pipeline.BAND_PIXELS = band  # many bands, one row each at the smallest
    try:
        got = pipeline.resize_banded(img, nh, nw)
    finally:
        pipeline.BAND_PIXELS = old
    want = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)
    assert (got - want).abs().max().item() < 1e-3
    assert (got.round() - want.round()).abs().max().item() <= 1


def test_banded_resize_of_a_large_image_matches() -> None:
    img = torch.randint(0, 256, (3, 2500, 1900), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    want = F.interpolate(img[None].float(), size=(640, 486), mode="bilinear", align_corners=False)
    got = pipeline.resize_banded(img, 640, 486)
    assert (got - want).abs().max().item() < 1e-3
    differ = (got.round() != want.round()).float().mean().item()
    assert differ < 1e-3, f"{differ:.2%} of pixels differ after rounding"


def test_low_bit_grey_alpha_and_palette_decode_to_their_values() -> None:
    def rgb(encoded: bytes) -> list[int]:
        decoded = decode_image(torch.frombuffer(bytearray(encoded), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return to_rgb8(decoded)[0].flatten().tolist()  # the red channel

    assert rgb(png(8, 1, 0, 1, bytes([0b10100000]))) == [255, 0, 255, 0, 0, 0, 0, 0]
    assert rgb(png(4, 1, 0, 2, bytes([0b00011011]))) == [0, 85, 170, 255]
    assert rgb(png(2, 1, 6, 8, bytes([10, 20, 30, 0, 200, 100, 50, 0]))) == [10, 200]  # alpha dropped, not blended
    assert rgb(png(2, 1, 3, 8, bytes([7, 250]))) == [7, 250]  # the grey palette
    assert rgb(png(2, 1, 0, 16, bytes([0xFF, 0xFF, 0x80, 0x00]))) == [255, 128]
