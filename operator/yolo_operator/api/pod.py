"""Pod overrides users expect on both kinds: env, envFrom, extra volumes and mounts, service account, pod labels
and annotations, affinity and topology spread.

Added to what the operator renders, never replacing it: the workload container's command and args, the config
volume and the operator's other volumes and mount paths, the security contexts (the `restricted` Pod Security
Standard: hence only the volume types it allows), the standard labels and the operator's annotations stay the
operator's. Each rule refuses the override that would touch them, naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_snake

from yolo_operator.api.common import (
    DNS_SUBDOMAIN,
    QUALIFIED_NAME,
    ApiModel,
    LabelValue,
    Name,
    QualifiedName,
    is_relative_inside,
    qualified_name_ok,
)
from yolo_operator.api.rules import Rule, exactly_one

ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_ENV = ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "PYTHONUNBUFFERED")
"""Set by the operator: Ultralytics stays offline whatever the spec says."""
RESERVED_VOLUMES = ("config", "dshm", "output", "data", "sources", "source-cache", "fetch-config")
RESERVED_VOLUME_PREFIXES = ("claim-", "source-")
RESERVED_PATHS = ("/etc/yolo", "/dev/shm", "/claims", "/sources", "/data", "/output", "/var/cache/yolo-sources")
"""Mount paths the operator uses (and everything below them)."""
RESERVED_LABEL_PREFIX = "app.kubernetes.io/"
RESERVED_ANNOTATION_PREFIX = "yolo-operator.io/"
RESTRICTED_VOLUME_TYPES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret")  # fmt: skip
"""The volume types the `restricted` Pod Security Standard allows."""
SubdomainName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$")]
OpenObject = Annotated[dict[str, Any], WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})]
"""A Kubernetes type passed through as the API server validates it in the pod (affinity, a volume source)."""


def _snake(wire: str) -> str:
    return "downward_api" if wire == "downwardAPI" else to_snake(wire)


def _in_reserved_path(path: str) -> bool:
    clean = "/" + path.strip("/")
    return clean == "/" or any(clean == p or clean.startswith(p + "/") for p in RESERVED_PATHS)


class KeyRef(ApiModel):
    """A key of a Secret or ConfigMap."""

    name: SubdomainName
    """The Secret's or ConfigMap's name."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    """The key whose value is taken."""
    optional: bool | None = None
    """Start the pod even when the key does not exist."""


class FieldRef(ApiModel):
    """A field of the pod (`metadata.name`, `spec.nodeName`, `status.podIP`, ...)."""

    field_path: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """The field, e.g. `spec.nodeName`."""
    api_version: str | None = None
    """Version of the schema the path is written in (v1)."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from. Exactly one."""

    secret_key_ref: KeyRef | None = None
    """A key of a Secret."""
    config_map_key_ref: KeyRef | None = None
    """A key of a ConfigMap."""
    field_ref: FieldRef | None = None
    """A field of the pod."""

    __rules__ = (exactly_one("secret_key_ref", "config_map_key_ref", "field_ref"),)


class EnvVar(ApiModel):
    """An environment variable of the workload container."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=ENV_NAME)]
    """The variable's name."""
    value: str | None = None
    """Its value."""
    value_from: EnvVarSource | None = None
    """Where its value comes from, instead of `value`."""

    __rules__ = (
        Rule(
            cel="!has(self.value) || !has(self.valueFrom)",
            message="set value or valueFrom, not both",
            check=lambda e: e.value is None or e.value_from is None,
            field="valueFrom",
        ),
        Rule(
            cel=f"!({' || '.join(repr(n) + ' == self.name' for n in RESERVED_ENV)})",
            message=f"{', '.join(RESERVED_ENV)} are set by the operator (workloads stay offline)",
            check=lambda e: e.name not in RESERVED_ENV,
            field="name",
        ),
    )


class NamedRef(ApiModel):
    """A ConfigMap or Secret in the resource's namespace, by name."""

    name: SubdomainName
    """Its name."""
    optional: bool | None = None
    """Start the pod even when it does not exist."""


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or Secret as environment variables. Exactly one of configMapRef or secretRef."""

    prefix: Annotated[str, StringConstraints(max_length=256, pattern=r"^[-._a-zA-Z0-9]*$")] | None = None
    """Put before every key's name."""
    config_map_ref: NamedRef | None = None
    """The ConfigMap."""
    secret_ref: NamedRef | None = None
    """The Secret."""

    __rules__ = (exactly_one("config_map_ref", "secret_ref"),)


class Volume(ApiModel):
    """An extra volume: a name and exactly one source of a type the `restricted` standard allows."""

    name: Name
    """The volume's name, which volumeMounts refer to."""
    config_map: OpenObject | None = None
    """A ConfigMap's keys as files, as in a Pod's spec."""
    csi: OpenObject | None = None
    """A CSI driver's volume, as in a Pod's spec."""
    downward_api: OpenObject | None = Field(default=None, alias="downwardAPI")
    """The pod's own fields as files, as in a Pod's spec."""
    empty_dir: OpenObject | None = None
    """A scratch folder, as in a Pod's spec."""
    ephemeral: OpenObject | None = None
    """A claim made for the pod and deleted with it, as in a Pod's spec."""
    persistent_volume_claim: OpenObject | None = None
    """A PersistentVolumeClaim, as in a Pod's spec."""
    projected: OpenObject | None = None
    """Several sources in one folder (a service account token, Secrets, ConfigMaps), as in a Pod's spec."""
    secret: OpenObject | None = None
    """A Secret's keys as files, as in a Pod's spec."""

    __rules__ = (
        Rule(
            # Written out: the wire name of downward_api is downwardAPI, not what exactly_one's camelCase gives.
            cel=" + ".join(f"(has(self.{t}) ? 1 : 0)" for t in RESTRICTED_VOLUME_TYPES) + " == 1",
            message=f"set exactly one volume source of {', '.join(RESTRICTED_VOLUME_TYPES)}",
            check=lambda v: sum(getattr(v, _snake(t)) is not None for t in RESTRICTED_VOLUME_TYPES) == 1,
        ),
        Rule(
            cel=f"!({' || '.join(repr(n) + ' == self.name' for n in RESERVED_VOLUMES)})"
            f" && !({' || '.join(f'self.name.startsWith({p!r})' for p in RESERVED_VOLUME_PREFIXES)})",
            message=f"volume names {', '.join(RESERVED_VOLUMES)} and those starting with "
            f"{' or '.join(RESERVED_VOLUME_PREFIXES)} are the operator's",
            check=lambda v: v.name not in RESERVED_VOLUMES and not v.name.startswith(RESERVED_VOLUME_PREFIXES),
            field="name",
        ),
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class VolumeMount(ApiModel):
    """Where an extra volume appears in the workload container."""

    name: Name
    """One of the volumes."""
    mount_path: Annotated[str, StringConstraints(min_length=2, max_length=1024, pattern=r"^/[^\x00:]*$")]
    """An absolute path outside the operator's own (/etc/yolo, /dev/shm, /claims, /sources, /data, /output)."""
    read_only: bool | None = None
    """Mount it read-only."""
    sub_path: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """A folder inside the volume to mount instead of its root."""

    __rules__ = (
        Rule(
            cel=" && ".join(f"self.mountPath != '{p}' && !self.mountPath.startsWith('{p}/')" for p in RESERVED_PATHS)
            + " && self.mountPath != '/'",
            message=f"mountPath must not be /, {', '.join(RESERVED_PATHS)} or below them: the operator mounts there",
            check=lambda m: not _in_reserved_path(m.mount_path),
            field="mountPath",
        ),
        Rule(
            cel="!has(self.subPath) || (!self.subPath.startsWith('/') && !self.subPath.matches('(^|/)[.][.](/|$)'))",
            message="subPath must be relative (no leading '/', no '..' segment)",
            check=lambda m: m.sub_path is None or is_relative_inside(m.sub_path),
            field="subPath",
        ),
    )


LabelMap = Annotated[
    dict[QualifiedName, LabelValue] | None,
    WithJsonSchema(
        {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}, "maxProperties": 64}
    ),
]
AnnotationMap = Annotated[
    dict[QualifiedName, str] | None,
    WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 64}),
]


class PodOverrides(ApiModel):
    """Additions to every workload pod of the resource (fetching, tuning, training, serving)."""

    env: list[EnvVar] | None = Field(default=None, max_length=64)
    """Environment variables of the workload container (not YOLO_OFFLINE: Ultralytics stays offline)."""
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=16)
    """ConfigMaps and Secrets whose keys become environment variables."""
    volumes: list[Volume] | None = Field(default=None, max_length=32)
    """Extra volumes (configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected,
    secret)."""
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=32)
    """Where the extra volumes appear in the workload container."""
    service_account_name: SubdomainName | None = None
    """The pods' ServiceAccount (its token stays unmounted unless a projected volume asks for it)."""
    labels: LabelMap = Field(default=None, max_length=64)
    """Extra pod labels; the app.kubernetes.io/ labels are the operator's."""
    annotations: AnnotationMap = Field(default=None, max_length=64)
    """Extra pod annotations; the yolo-operator.io/ ones are the operator's."""
    affinity: OpenObject | None = None
    """Node, pod and anti-affinity, as in a Pod's spec."""
    topology_spread_constraints: Annotated[
        list[dict[str, Any]] | None,
        WithJsonSchema(
            {
                "type": "array",
                "maxItems": 16,
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }
        ),
    ] = Field(default=None, max_length=16)
    """How pods spread over zones or nodes, as in a Pod's spec."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.labels) || self.labels.all(k, !k.startsWith('app.kubernetes.io/') && size(k) <= 317 "
            f"&& k.matches('{QUALIFIED_NAME}'))",
            message="labels: keys must be label keys, and app.kubernetes.io/ labels are the operator's",
            check=lambda p: all(
                qualified_name_ok(k) and not k.startswith(RESERVED_LABEL_PREFIX) for k in p.labels or {}
            ),
            field="labels",
        ),
        Rule(
            cel="!has(self.annotations) || self.annotations.all(k, !k.startsWith('yolo-operator.io/'))",
            message="annotations: the yolo-operator.io/ annotations are the operator's",
            check=lambda p: not any(k.startswith(RESERVED_ANNOTATION_PREFIX) for k in p.annotations or {}),
            field="annotations",
        ),
        Rule(
            cel="!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))",
            message="volumeMounts: each names one of volumes",
            check=lambda p: {m.name for m in p.volume_mounts or []} <= {v.name for v in p.volumes or []},
            field="volumeMounts",
        ),
    )
