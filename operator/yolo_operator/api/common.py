"""Building blocks shared by both kinds: the base model, conditions, resources, volume references, errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from yolo_operator.api.rules import Rule

GROUP = "yolo-operator.io"
VERSION = "v1alpha1"
API_VERSION: Final = "yolo-operator.io/v1alpha1"

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def _quantity(value: int | str) -> int | str:
    if isinstance(value, bool) or (isinstance(value, str) and not re.match(QUANTITY_PATTERN, value)):
        raise PydanticCustomError("quantity", "must be a Kubernetes quantity such as 8, 500m or 32Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity such as `8`, `500m` or `32Gi`."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, unknown fields rejected, rules checked in Python too."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )
    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).__rules__:
            if rule.check is not None and not rule.check(self):
                raise PydanticCustomError("rule", rule.message, {"field": rule.field or ""})
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def defaulted(model: type[ApiModel]) -> Any:
    """A nested object that defaults to the model's own defaults, in Python and in the CRD alike.

    The CRD needs the whole default object, not `{}`: the API server checks a default against the schema's CEL
    rules as written, without filling in nested defaults first.
    """
    return Field(default_factory=model, json_schema_extra={"default": model().to_wire()})


class StatusModel(ApiModel):
    """Status is written by the operator; tolerate fields a newer operator may have added."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Condition(StatusModel):
    """One observation of the resource's state, in the shape of metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316)]
    """The aspect observed, such as Ready, Tuned, Complete, Failed, ScalingActive."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: str
    """When the status last changed (RFC 3339)."""
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    """A CamelCase word saying why, for machines."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """A sentence saying why, for people."""


class VolumeFile(ApiModel):
    """A file or folder on a PersistentVolumeClaim in the resource's namespace."""

    claim_name: Name
    """The PersistentVolumeClaim's name."""
    path: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")]
    """Path inside the volume, relative to its root (`models/best.pt`)."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!self.path.startsWith('/') && !self.path.contains('..')",
            message="path must be relative to the volume's root and must not contain '..'",
            check=lambda v: not v.path.startswith("/") and ".." not in v.path,
            field="path",
        ),
    )


class ModelVolume(VolumeFile):
    """Weights (`.pt`) on a PersistentVolumeClaim."""

    __rules__ = (
        *VolumeFile.__rules__,
        Rule(
            cel="self.path.endsWith('.pt')",
            message="path must name a PyTorch weights file ending in .pt",
            check=lambda v: v.path.endswith(".pt"),
            field="path",
        ),
    )


class Toleration(ApiModel):
    """A toleration, as in a Pod's spec."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace, by name."""

    name: Name


class Resources(ApiModel):
    """Where and with what each workload pod runs."""

    gpus: int = Field(default=1, ge=0, le=16)
    """NVIDIA GPUs per pod (`nvidia.com/gpu`). 0 runs on CPU, for trials only."""
    cpu: Quantity = "8"
    """CPU request and limit per pod. The tuning phase bounds dataloader workers by it."""
    memory: Quantity = "32Gi"
    """Memory request and limit per pod. The tuning phase allows RAM caching only if the data set fits."""
    shm_size: Quantity = "8Gi"
    """Size of the memory-backed /dev/shm that PyTorch's dataloader workers share batches through."""
    node_selector: dict[str, str] | None = None
    """Node labels the pods must match, e.g. `nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3`."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)
    """Taints the pods tolerate, e.g. `nvidia.com/gpu:NoSchedule`."""
    priority_class_name: Name | None = None
    """PriorityClass of the pods."""
    image: str | None = None
    """The workload image; the operator's default when unset."""
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None, max_length=16)
    """Secrets for pulling the image."""


class SpecError(ValueError):
    """A resource that does not validate; each problem names its field (`spec.train.imgsz: ...`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def format_errors(exc: ValidationError, root: str = "") -> list[str]:
    """Turn pydantic's errors into `field.path: message` lines, with the wire (camelCase) names."""
    lines = []
    for err in exc.errors():
        loc = [root] if root else []
        loc += [f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"] if not _is_union_tag(p)]
        if err["type"] == "rule" and err.get("ctx", {}).get("field"):
            loc.append(err["ctx"]["field"])
        path = ".".join(loc).replace(".[", "[")
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the tried union member ("int", "str", "function-after[...]") into the location
    return isinstance(part, str) and (part in {"int", "str"} or "[" in part)


def parse_resource(doc: dict[str, Any]) -> Any:
    """Validate a manifest of either kind; raise SpecError naming every bad field."""
    from yolo_operator.api.inference_service import YoloInferenceService
    from yolo_operator.api.train_job import YoloTrainJob

    kinds: dict[str, type[BaseModel]] = {"YoloTrainJob": YoloTrainJob, "YoloInferenceService": YoloInferenceService}
    if not isinstance(doc, dict):
        raise SpecError(["the manifest must be a mapping with apiVersion, kind, metadata and spec"])
    kind = doc.get("kind")
    if kind not in kinds:
        raise SpecError([f"kind: must be one of {sorted(kinds)}, got {kind!r}"])
    if doc.get("apiVersion") != API_VERSION:
        raise SpecError([f"apiVersion: must be {API_VERSION!r}, got {doc.get('apiVersion')!r}"])
    try:
        return kinds[kind].model_validate(doc)
    except ValidationError as exc:
        raise SpecError(format_errors(exc)) from None


class ObjectMeta(BaseModel):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=45, pattern=DNS_LABEL)]
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")
    resource_version: str | None = Field(default=None, alias="resourceVersion")


NAME_RULE = Rule(
    cel="size(self.metadata.name) <= 45 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    message="metadata.name must be a DNS label of at most 45 characters: child objects append suffixes to it",
)
