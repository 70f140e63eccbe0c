"""Building blocks shared by both kinds: the base model, conditions, resources, volume references, errors."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from yolo_operator.api.rules import Rule

GROUP = "yolo-operator.io"
VERSION = "v1alpha1"
API_VERSION: Final = "yolo-operator.io/v1alpha1"

QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A non-negative Kubernetes quantity as text: the API server's own syntax less the minus sign."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Service name: a DNS label that starts with a letter (Services refuse names starting with a digit)."""
LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
"""The name part of a label key, and a non-empty label value: at most 63 characters (k8s IsQualifiedName)."""
DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
QUALIFIED_NAME = rf"^({DNS_SUBDOMAIN}/)?{LABEL_NAME}$"
"""A label key or taint key: an optional DNS-subdomain prefix (at most 253 characters) and `/`, then a name."""
LABEL_VALUE = rf"^({LABEL_NAME})?$"
"""A label value: empty, or a name of at most 63 characters (k8s IsValidLabelValue)."""
DOTDOT_SEGMENT = r"(^|/)[.][.](/|$)"
"""A `..` path segment: a path containing one may climb out of its volume."""


def _quantity_type(value: Any) -> Any:
    # Before pydantic's lax coercion, which would turn `true` into 1 and hide the mistake.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError("quantity", "must be a Kubernetes quantity such as 8, 0.5, 500m or 32Gi")
    return value


def _quantity(value: float | str) -> float | str:
    """Negative or malformed quantities can never be scheduled; numbers (`cpu: 0.5`) are quantities too."""
    if isinstance(value, str):
        if not re.match(QUANTITY_PATTERN, value):
            raise PydanticCustomError(
                "quantity", "must be a non-negative Kubernetes quantity such as 8, 0.5, 500m or 32Gi"
            )
    elif not math.isfinite(value) or value < 0:
        raise PydanticCustomError("quantity", "must be a non-negative Kubernetes quantity such as 8, 0.5, 500m or 32Gi")
    elif value == 0:
        return 0  # -0.0 would render as "-0.0"
    return value


Quantity = Annotated[
    int | float | str,
    BeforeValidator(_quantity_type),
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            # A number or a string. The API server's int-or-string would refuse `cpu: 0.5`, and a structural schema
            # cannot declare number-or-string, so the type is left open: `pattern` checks strings, `minimum` checks
            # numbers, and the operator refuses anything else (a boolean, a list) with a condition.
            "x-kubernetes-preserve-unknown-fields": True,
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
        }
    ),
]
"""A non-negative Kubernetes resource quantity such as `8`, `0.5`, `500m` or `32Gi`."""

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
                message = rule.explain(self) if rule.explain is not None else rule.message
                raise PydanticCustomError("rule", message, {"field": rule.field or ""})
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


def relative_path_rule(field: str, optional: bool = False) -> Rule:
    """A path stays inside its volume: relative (no leading `/`) and without a `..` segment.

    Checked by the API server (CEL) and by the models alike, so the local runner refuses it too.
    """
    guard = f"!has(self.{field}) || " if optional else ""
    return Rule(
        cel=f"{guard}(!self.{field}.startsWith('/') && !self.{field}.matches('{DOTDOT_SEGMENT}'))",
        message=f"{field} must be relative to the volume's root (no leading '/') and must not contain a '..' segment",
        check=lambda v: is_relative_inside(getattr(v, to_snake(field)) or ""),
        field=field,
    )


def is_relative_inside(path: str) -> bool:
    """True when `path` names something inside its volume: no leading `/`, no `..` segment."""
    return not path.startswith("/") and re.search(DOTDOT_SEGMENT, path) is None


class VolumeFile(ApiModel):
    """A file or folder on a PersistentVolumeClaim in the resource's namespace."""

    claim_name: Name
    """The PersistentVolumeClaim's name."""
    path: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")]
    """Path inside the volume, relative to its root (`models/best.pt`)."""

    __rules__: ClassVar[tuple[Rule, ...]] = (relative_path_rule("path"),)


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


def qualified_name_ok(key: str) -> bool:
    """A label or taint key as Kubernetes validates it (IsQualifiedName): the prefix also at most 253 characters."""
    prefix, _, _ = key.rpartition("/")
    return re.match(QUALIFIED_NAME, key) is not None and len(prefix) <= 253


QualifiedName = Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=QUALIFIED_NAME)]
"""A label key (the 253-character limit of its prefix is checked by the operator)."""
TaintKey = Annotated[str, StringConstraints(max_length=317, pattern=rf"^(({DNS_SUBDOMAIN}/)?{LABEL_NAME})?$")]
"""A taint key in a toleration: a label key, or empty (with operator Exists: every taint)."""
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
"""A label value or taint value."""


class Toleration(ApiModel):
    """A toleration, as in a Pod's spec, refused here when Kubernetes would refuse the pod."""

    key: TaintKey | None = None
    """The taint key; unset (with operator Exists) tolerates every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Equal (the default) compares the value; Exists matches any value."""
    value: LabelValue | None = None
    """The taint value, with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect tolerated; unset tolerates all."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated before eviction."""

    __rules__ = (
        Rule(
            cel="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            message="operator must be Exists when key is empty (a toleration of every taint)",
            check=lambda t: bool(t.key) or t.operator == "Exists",
            field="operator",
        ),
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="value must be empty when operator is Exists",
            check=lambda t: t.operator != "Exists" or not t.value,
            field="value",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            message="tolerationSeconds may be set only with effect NoExecute",
            check=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            field="tolerationSeconds",
        ),
        Rule(
            cel="!has(self.key) || !self.key.contains('/') || self.key.indexOf('/') <= 253",
            message="key's prefix (before '/') must be a DNS subdomain of at most 253 characters",
            check=lambda t: not t.key or qualified_name_ok(t.key),
            field="key",
        ),
    )


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
    node_selector: Annotated[
        dict[QualifiedName, LabelValue] | None,
        # Structural schemas have no propertyNames or patternProperties: the keys are checked by a rule below.
        WithJsonSchema(
            {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
                "maxProperties": 64,
            }
        ),
    ] = Field(default=None, max_length=64)
    """Node labels the pods must match, e.g. `nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3`."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=32)
    """Taints the pods tolerate, e.g. `nvidia.com/gpu:NoSchedule`."""
    priority_class_name: Name | None = None
    """PriorityClass of the pods."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^\S+$")] | None = None
    """The workload image; the operator's default when unset. No spaces: a pod with an empty or padded image is
    refused by Kubernetes."""
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None, max_length=16)
    """Secrets for pulling the image."""

    __rules__ = (
        Rule(
            # The keys' syntax; the 253-character limit of a key's prefix is checked by the operator.
            cel=f"!has(self.nodeSelector) || self.nodeSelector.all(k, size(k) <= 317 && k.matches('{QUALIFIED_NAME}'))",
            message="nodeSelector keys must be label keys: an optional DNS-subdomain prefix and '/', then a name of "
            "at most 63 letters, digits, '-', '_' or '.' that starts and ends with a letter or digit",
            check=lambda r: all(qualified_name_ok(k) for k in r.node_selector or {}),
            field="nodeSelector",
        ),
    )


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
        elif err["type"] in _SHAPE_ERRORS:
            message = _shape_message(err)
        lines.append(f"{path}: {message}" if path else message)
    return lines


_SHAPE_ERRORS = {"model_type": "an object", "dict_type": "a mapping", "list_type": "a list"}
"""pydantic's errors for a value of the wrong JSON shape, and the shape expected."""


def _shape_message(err: Any) -> str:
    """`must be an object with claimName, path; got the string 'yolov8n.pt'`: what the field takes, in the
    manifest's words, instead of pydantic's class names."""
    expected = _SHAPE_ERRORS[err["type"]]
    model = _api_models().get(err.get("ctx", {}).get("class_name", ""))
    if model is not None:
        expected += " with " + ", ".join(f.alias or name for name, f in model.model_fields.items())
    given = err.get("input")
    kind = {str: "the string", bool: "the boolean", int: "the number", float: "the number", list: "a list"}
    got = f"{kind.get(type(given), 'a value')} {given!r}" if not isinstance(given, dict) else "a mapping"
    return f"must be {expected}; got {got}"


def _api_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending: list[type[BaseModel]] = [ApiModel]
    while pending:
        model = pending.pop()
        found[model.__name__] = model
        pending.extend(model.__subclasses__())
    return found


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


class ServiceObjectMeta(ObjectMeta):
    """Metadata of a kind whose name is also the name of a Service: a DNS-1035 label (starts with a letter)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=45, pattern=DNS_1035_LABEL)]


SERVICE_NAME_RULE = Rule(
    cel=f"size(self.metadata.name) <= 45 && self.metadata.name.matches('{DNS_1035_LABEL}')",
    message="metadata.name must be a DNS-1035 label of at most 45 characters, starting with a letter: the Service "
    "the operator creates is named after it, and child objects append suffixes to it",
)
