"""Open Inference Protocol v2 (KServe / Triton REST) request parsing and response encoding, with the binary
tensor extension that tritonclient uses by default (`Inference-Header-Content-Length`).

Input: exactly one tensor (name free; `images` advertised):
- BYTES, shape [N]: N encoded JPEG/PNG images (binary extension: each element is a 4-byte little-endian length
  then the bytes; in JSON, each element is a base64 string);
- UINT8 (0-255) or FP32 (0-1, Ultralytics' tensor convention) RGB pixels, shape [N,H,W,3] (NHWC) or [N,3,H,W]
  (NCHW); the layout is read from the shape, or from the input's `parameters.layout` when H or W is 3.
Outputs: boxes FP32 [N,K,4] (xyxy, original image pixels), scores FP32 [N,K], classes INT32 [N,K] (-1 pads),
counts INT32 [N] (valid detections per image); K is the largest count in the request. Per task, besides those
(TASK_OUTPUTS; docs/inferenceservice.md has the table): segment adds mask_rle INT32 [T] (every mask's COCO
uncompressed RLE counts, column-major over its image, concatenated image by image, detection by detection) and
mask_rle_lengths INT32 [N,K] (how many of those counts each mask has; 0 pads); pose adds keypoints FP32
[N,K,nk,3] (x, y, visibility); obb adds obb FP32 [N,K,5] (cx, cy, w, h, angle in radians; boxes then hold the
box around it); classify answers only classes INT32 [N,k] and scores FP32 [N,k], the top k (5) best first.

Every malformed body is an ImageError (400; 413 when pixel tensors would pass the memory budget), never another
exception: wrongly typed fields, out-of-range or non-numeric tensor data, nesting deeper than the shape, JSON
nested past the parser's recursion limit. The budget is checked from the shape, before any tensor is built.
Pure numpy: no torch here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from yolo_workloads.serve.imagecheck import ImageError

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "images"
OUTPUTS = ("boxes", "scores", "classes", "counts")
TASK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "detect": OUTPUTS,
    "segment": (*OUTPUTS, "mask_rle", "mask_rle_lengths"),
    "pose": (*OUTPUTS, "keypoints"),
    "obb": (*OUTPUTS, "obb"),
    "classify": ("classes", "scores"),
}
DATATYPES = {
    "boxes": "FP32",
    "scores": "FP32",
    "classes": "INT32",
    "counts": "INT32",
    "mask_rle": "INT32",
    "mask_rle_lengths": "INT32",
    "keypoints": "FP32",
    "obb": "FP32",
}
_NP = {"UINT8": np.uint8, "FP32": np.float32, "INT32": np.int32}
LAYOUTS = ("NHWC", "NCHW")
RGB = 3


@dataclass
class V2Request:
    id: str | None
    encoded: list[bytes] | None  # BYTES input
    pixels: np.ndarray | None  # uint8 [N,3,H,W] RGB, from a UINT8/FP32 input
    outputs: list[str]
    binary: dict[str, bool]


def _bad(msg: str) -> ImageError:
    return ImageError(f"invalid inference request: {msg}", status=400)


def _split_bytes(raw: bytes, count: int) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise _bad("BYTES element length prefix is cut short")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise _bad("BYTES element is shorter than its length prefix")
        out.append(raw[i : i + n])
        i += n
    if len(out) != count:
        raise _bad(f"BYTES input holds {len(out)} elements, shape says {count}")
    return out


def _flatten(data: Any, max_depth: int) -> list[Any]:
    """Row-major elements of a flat or nested list, refusing nesting deeper than the tensor's rank."""
    out: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, list):
            out.append(node)
            continue
        if depth >= max_depth:
            raise _bad(f"tensor `data` is nested deeper than its shape's {max_depth} dimensions")
        stack.extend((child, depth + 1) for child in reversed(node))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _load_json(head: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _bad(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise _bad("body must be a JSON object")
    return doc


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"parameter `{key}` must be true or false, got {value!r:.40}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"`{where}` must be an object")
    return value


def parse_request(
    body: bytes, header_length: str | None, max_pixel_bytes: int | None = None, outputs: tuple[str, ...] = OUTPUTS
) -> V2Request:
    """Parse a v2 infer body (JSON, optionally followed by binary tensor data). Raises ImageError (400, or 413
    when a pixel tensor holds more than `max_pixel_bytes` of 8-bit RGB). `outputs`: the served task's outputs,
    those a request may ask for."""
    head, binary = _split_body(body, header_length)
    doc = _load_json(head)
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad("`inputs` must be a list of exactly one tensor (encoded images or pixels)")
    inp = inputs[0]
    shape, dtype = inp.get("shape"), inp.get("datatype")
    if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape) or not 1 <= len(shape) <= 4:
        raise _bad("`inputs[0].shape` must be a list of 1 to 4 non-negative integers")
    params = _object(inp.get("parameters"), "inputs[0].parameters")
    count = math.prod(shape)
    raw: bytes | None = None
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not _is_int(size) or size < 0 or size > len(binary):
            raise _bad(f"binary_data_size {size!r} does not fit the {len(binary)} binary bytes sent")
        raw = binary[:size]
    elif "data" not in inp:
        raise _bad("`inputs[0]` has neither `data` nor `parameters.binary_data_size`")

    encoded: list[bytes] | None = None
    pixels: np.ndarray | None = None
    if dtype == "BYTES":
        if len(shape) != 1:
            raise _bad(f"BYTES input must have shape [N], got {shape}")
        encoded = _split_bytes(raw, count) if raw is not None else _base64_images(inp["data"], count)
    elif dtype in ("UINT8", "FP32"):
        if len(shape) != 4:
            raise _bad(f"{dtype} input must have a 4-D shape [N,H,W,3] or [N,3,H,W], got {shape}")
        if max_pixel_bytes is not None and count > max_pixel_bytes:
            raise ImageError(
                f"pixel tensor of shape {shape} is {count} bytes as 8-bit RGB, over "
                f"max_request_decoded_bytes={max_pixel_bytes}",
                status=413,
            )
        pixels = _pixels(inp, shape, dtype, raw, params)
    else:
        raise _bad(f"datatype {dtype!r} not supported: use BYTES (encoded images), UINT8 or FP32 (pixels)")

    wanted, binary_flags = _requested_outputs(doc, outputs)
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise _bad("`id` must be a string")
    return V2Request(rid, encoded, pixels, wanted, binary_flags)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON head and the binary tensor data after it (`Inference-Header-Content-Length`; none: all JSON)."""
    if header_length is None:
        return body, b""
    try:
        hlen = int(header_length)
    except ValueError:
        raise _bad(f"{HEADER_LENGTH} is not an integer: {header_length!r}") from None
    if not 0 <= hlen <= len(body):
        raise _bad(f"{HEADER_LENGTH}={hlen} is outside the body of {len(body)} bytes")
    return body[:hlen], body[hlen:]


def _base64_images(data: Any, count: int) -> list[bytes]:
    """The encoded images of a BYTES tensor sent as JSON `data`: `count` base64 strings."""
    items = _flatten(data, 1)
    if len(items) != count or not all(isinstance(x, str) for x in items):
        raise _bad(f"BYTES `data` must be {count} base64 strings")
    try:
        return [base64.b64decode(x, validate=True) for x in items]
    except (binascii.Error, ValueError):
        raise _bad("BYTES `data` elements must be base64-encoded images") from None


def _json_tensor(data: Any, shape: list[int], dtype: str) -> np.ndarray:
    """A tensor from JSON `data` (flat or nested), refusing elements that are not numbers of the datatype's range
    (numpy would wrap 300 to 44, or raise OverflowError, for UINT8)."""
    flat = _flatten(data, len(shape))
    if len(flat) != math.prod(shape):
        raise _bad(f"tensor `data` holds {len(flat)} elements, shape {shape} needs {math.prod(shape)}")
    try:
        arr = np.asarray(flat)
    except (ValueError, TypeError, OverflowError):
        arr = np.asarray([], dtype=object)
    if arr.size and arr.dtype.kind not in ("iu" if dtype == "UINT8" else "iuf"):
        kind = "integers 0-255" if dtype == "UINT8" else "numbers"
        raise _bad(f"{dtype} tensor `data` must hold only {kind}")
    if dtype == "UINT8" and arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise _bad("UINT8 tensor `data` must hold integers 0-255")
    with np.errstate(over="ignore", invalid="ignore"):  # FP32 overflow becomes inf, refused as not finite
        return arr.astype(_NP[dtype]).reshape(shape)


def _pixels(inp: dict[str, Any], shape: list[int], dtype: str, raw: bytes | None, params: dict[str, Any]) -> np.ndarray:
    np_type = _NP[dtype]
    if raw is not None:
        if len(raw) != math.prod(shape) * np.dtype(np_type).itemsize:
            raise _bad(f"{len(raw)} binary bytes do not match shape {shape} and datatype {dtype}")
        arr = np.frombuffer(raw, dtype=np_type).reshape(shape)
    else:
        arr = _json_tensor(inp["data"], shape, dtype)
    layout = params.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise _bad(f"parameter `layout` must be one of {', '.join(LAYOUTS)}, got {layout!r:.40}")
    if layout is None:
        layout = "NHWC" if shape[3] == 3 and shape[1] != 3 else "NCHW" if shape[1] == 3 else None
    if layout == "NHWC" and shape[3] == 3:
        arr = arr.transpose(0, 3, 1, 2)
    elif layout != "NCHW" or shape[1] != 3:
        raise _bad(f"cannot read RGB layout from shape {shape}: use [N,H,W,3] or [N,3,H,W] (parameters.layout)")
    if dtype == "FP32":
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(arr).all():
                raise _bad("FP32 pixels must be finite")
            arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _requested_outputs(doc: dict[str, Any], known: tuple[str, ...]) -> tuple[list[str], dict[str, bool]]:
    params = _object(doc.get("parameters"), "parameters")
    default_binary = _flag(params, "binary_data_output", False)
    req = doc.get("outputs")
    if req is None:
        return list(known), dict.fromkeys(known, default_binary)
    if not isinstance(req, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in req):
        raise _bad("`outputs` must be a list of objects with a `name`")
    names: list[str] = []
    flags: dict[str, bool] = {}
    for o in req:
        if o["name"] not in known:
            raise _bad(f"unknown output {o['name']!r}; outputs are {', '.join(known)}")
        names.append(o["name"])
        oparams = _object(o.get("parameters"), f"outputs[{len(names) - 1}].parameters")
        flags[o["name"]] = _flag(oparams, "binary_data", default_binary)
    return names, flags


def pack(dets: list[Any], task: str = "detect") -> dict[str, np.ndarray]:
    """Stack per-image Detections (or Classifications) into the task's padded output tensors."""
    if task == "classify":
        return {"classes": np.stack([d.classes for d in dets]), "scores": np.stack([d.scores for d in dets])}
    out = _pack_boxes(dets)
    k = out["scores"].shape[1]
    if task == "segment":
        out.update(_pack_masks(dets, k))
    elif task == "pose":
        shape = next((d.keypoints.shape[1:] for d in dets if d.keypoints is not None), (0, 3))
        out["keypoints"] = np.zeros((len(dets), k, *shape), np.float32)
        for i, d in enumerate(dets):
            out["keypoints"][i, : len(d.scores)] = d.keypoints
    elif task == "obb":
        out["obb"] = np.zeros((len(dets), k, 5), np.float32)
        for i, d in enumerate(dets):
            out["obb"][i, : len(d.scores)] = d.obb
    return out


def _pack_masks(dets: list[Any], k: int) -> dict[str, np.ndarray]:
    """Every mask's RLE counts in one flat INT32 tensor, and how many belong to each (image, detection)."""
    lengths = np.zeros((len(dets), k), np.int32)
    flat: list[np.ndarray] = []
    for i, d in enumerate(dets):
        for j, counts in enumerate(d.masks or []):
            lengths[i, j] = len(counts)
            flat.append(counts)
    rle = np.concatenate(flat).astype(np.int32) if flat else np.zeros((0,), np.int32)
    return {"mask_rle": rle, "mask_rle_lengths": lengths}


def _pack_boxes(dets: list[Any]) -> dict[str, np.ndarray]:
    n = len(dets)
    k = max((len(d.scores) for d in dets), default=0)
    boxes = np.zeros((n, k, 4), np.float32)
    scores = np.zeros((n, k), np.float32)
    classes = np.full((n, k), -1, np.int32)
    counts = np.zeros((n,), np.int32)
    for i, d in enumerate(dets):
        c = len(d.scores)
        counts[i] = c
        boxes[i, :c] = d.boxes
        scores[i, :c] = d.scores
        classes[i, :c] = d.classes
    return {"boxes": boxes, "scores": scores, "classes": classes, "counts": counts}


def encode_response(model_name: str, req: V2Request, tensors: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers (binary extension when any output asked for binary data)."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in req.outputs:
        arr = tensors[name]
        out: dict[str, Any] = {"name": name, "datatype": DATATYPES[name], "shape": list(arr.shape)}
        if req.binary.get(name):
            blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = arr.ravel().tolist()
        outputs.append(out)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": outputs}
    if req.id is not None:
        doc["id"] = req.id
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
