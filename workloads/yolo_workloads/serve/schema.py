"""The request bodies of the hot endpoints, described for the OpenAPI document.

The endpoints read raw bodies (no pydantic validation per request: v2.py parses them), so FastAPI cannot infer
what they accept. These models exist only to publish it: `/openapi.json` then names the v2 infer request and the
`/v1/detect` uploads, and schema-driven fuzzers (schemathesis and the like) can generate bodies for them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REF = "#/components/schemas/{model}"


class InferInputParameters(BaseModel):
    binary_data_size: int | None = Field(default=None, ge=0, description="bytes of this input after the JSON head")
    layout: Literal["NHWC", "NCHW"] | None = Field(default=None, description="pixel layout when H or W is 3")


class InferInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(description="free; `images` is advertised")
    shape: list[int] = Field(min_length=1, max_length=4, description="[N] for BYTES; [N,H,W,3] or [N,3,H,W]")
    datatype: Literal["BYTES", "UINT8", "FP32"]
    data: list[Any] | None = Field(
        default=None,
        description="BYTES: base64 strings of JPEG/PNG images; UINT8: integers 0-255; FP32: numbers 0-1; "
        "flat or nested as the shape",
    )
    parameters: InferInputParameters | None = None


class RequestedOutputParameters(BaseModel):
    binary_data: bool | None = None


class RequestedOutput(BaseModel):
    name: Literal["boxes", "scores", "classes", "counts", "mask_rle", "mask_rle_lengths", "keypoints", "obb"] = Field(
        description="the served task's outputs only (v2.TASK_OUTPUTS): classify has classes and scores; segment "
        "adds mask_rle and mask_rle_lengths to detection's four, pose keypoints, obb obb"
    )
    parameters: RequestedOutputParameters | None = None


class InferParameters(BaseModel):
    model_config = ConfigDict(extra="allow")

    binary_data_output: bool | None = None


class InferRequest(BaseModel):
    """Open Inference Protocol v2 infer request: exactly one input tensor."""

    id: str | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: InferParameters | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx the server answers."""

    error: str


def components() -> dict[str, Any]:
    """JSON schemas of the models above, for `components.schemas`."""
    out: dict[str, Any] = {}
    for model in (InferRequest, ErrorBody):
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {"description": "error", "content": {"application/json": {"schema": _ref("ErrorBody")}}}
        for code in codes
    }


INFER_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _ref("InferRequest")},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "binary tensor extension: the JSON head (Inference-Header-Content-Length bytes), "
                "then the tensor bytes",
            },
        },
    },
    "responses": _errors(400, 404, 413, 415, 422, 503),
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
DETECT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "application/octet-stream": _BINARY,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "additionalProperties": {"type": "string", "format": "binary"},
                }
            },
        },
    },
    "responses": _errors(400, 413, 415, 422, 503),
}
