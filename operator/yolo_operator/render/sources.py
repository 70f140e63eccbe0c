"""Sources named by URI and pod overrides, as pod-spec pieces both renderers share. Pure.

A URI source (`s3://`, `https://`) becomes one entry of the FetchConfig that the init container `fetch` (the
standard image's `yolo-workload fetch`) reads from the step's ConfigMap; it links each fetched file or folder under
`/sources` (an emptyDir both containers mount), pointing into the per-content cache: a claim folder when the spec
names one (shared by later jobs and by replicas), else an emptyDir. A `pvc://` source is mounted, not downloaded,
except an archive on a claim, which the init container unpacks (`file://`). Credentials (a Secret) and CA bundles
(a ConfigMap) are mounted into the init container only: the workload never sees them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from yolo_workloads.contract import DEFAULT_TERMINATION_LOG, FetchConfig, FetchSource, source_kind

from yolo_operator.api.pod import PodOverrides
from yolo_operator.api.sources import DEFAULT_REGION, DataSource, Source, max_bytes, pvc_parts
from yolo_operator.render.common import CONFIG_KEY, config_yaml, workload_env

SOURCES_DIR = "/sources"
CACHE_DIR = "/var/cache/yolo-sources"
SECRETS_DIR = "/etc/yolo-sources"
FETCH_CONTAINER = "fetch"
FETCH_CONFIG_KEY = "fetch.yaml"
WEIGHTS_LINK = f"{SOURCES_DIR}/weights.pt"
"""Ultralytics checks the `.pt` suffix of what it loads, so the weights' link keeps it."""
DATA_LINK = f"{SOURCES_DIR}/data"


@dataclass
class Fetches:
    """The sources one pod fetches, and the init container's extra volumes and mounts (credentials, CAs)."""

    cache_dir: str = CACHE_DIR
    sources: list[FetchSource] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, spec_field: str, source: Source, uri: str, link: str) -> None:
        """One source to fetch into `link`; `uri` is the source's or, for an archive on a claim, its file://."""
        n = len(self.sources)
        entry: dict[str, Any] = {
            "field": spec_field,
            "uri": uri,
            "kind": source_kind(uri),
            "sha256": source.sha256,
            "max_bytes": max_bytes(source),
            "link": link,
            "endpoint": source.endpoint.rstrip("/") if source.endpoint else None,
            "region": source.region or DEFAULT_REGION,
        }
        if source.credentials_secret:
            entry["credentials_dir"] = self._mount(f"source-{n}-credentials", "credentials", n, {
                "secret": {"secretName": source.credentials_secret, "defaultMode": 0o440}
            })  # fmt: skip
        if source.ca_bundle:
            ca = source.ca_bundle
            items = [{"key": ca.key, "path": "ca.crt"}]
            folder = self._mount(f"source-{n}-ca", "ca", n, {"configMap": {"name": ca.config_map_name, "items": items}})
            entry["ca_file"] = f"{folder}/ca.crt"
        self.sources.append(FetchSource.model_validate(entry))

    def _mount(self, name: str, leaf: str, n: int, volume_source: dict[str, Any]) -> str:
        path = f"{SECRETS_DIR}/{n}/{leaf}"
        self.volumes.append({"name": name, **volume_source})
        self.mounts.append({"name": name, "mountPath": path, "readOnly": True})
        return path

    def config(self) -> FetchConfig | None:
        return FetchConfig(sources=self.sources, cache_dir=self.cache_dir) if self.sources else None


def configmap_data(config_text: str, fetches: Fetches) -> dict[str, str]:
    """A step's ConfigMap data: the workload's config and, when the pod fetches sources, the fetch step's."""
    data = {CONFIG_KEY: config_text}
    fetch = fetches.config()
    if fetch is not None:
        data[FETCH_CONFIG_KEY] = config_yaml(fetch)
    return data


def data_yaml(link: str, source: DataSource) -> str:
    return posixpath.join(link, source.yaml)


def fetch_container(
    image: str, resources: dict[str, Any], security: dict[str, Any], mounts: list[dict[str, Any]], config_path: str
) -> dict[str, Any]:
    """The init container: CPU and memory as the workload's (the pod's requests do not grow), no GPU."""
    amounts = {k: v for k, v in resources.get("limits", {}).items() if k in ("cpu", "memory")}
    return {
        "name": FETCH_CONTAINER,
        "image": image,
        "args": ["fetch", "--config", config_path],
        "env": workload_env(),
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "securityContext": security,
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def source_claim(source: Source) -> str | None:
    return pvc_parts(source.uri)[0] if source.uri.startswith("pvc://") else None


# --- pod overrides --------------------------------------------------------------------------------------------


def apply_overrides(
    pod_spec: dict[str, Any], metadata: dict[str, Any], container: dict[str, Any], overrides: PodOverrides | None
) -> None:
    """Add the spec's pod overrides to a rendered pod template, in place. The operator's own entries come last
    where the API server would take the last of two (labels, annotations), so they always win."""
    if overrides is None:
        return
    o = overrides
    if o.env:
        container["env"] = [*container.get("env", []), *(e.to_wire() for e in o.env)]
    if o.env_from:
        container["envFrom"] = [e.to_wire() for e in o.env_from]
    if o.volume_mounts:
        container["volumeMounts"] = [*container.get("volumeMounts", []), *(m.to_wire() for m in o.volume_mounts)]
    if o.volumes:
        pod_spec["volumes"] = [*pod_spec.get("volumes", []), *(v.to_wire() for v in o.volumes)]
    if o.service_account_name:
        pod_spec["serviceAccountName"] = o.service_account_name
    if o.affinity:
        pod_spec["affinity"] = dict(o.affinity)
    if o.topology_spread_constraints:
        pod_spec["topologySpreadConstraints"] = [dict(c) for c in o.topology_spread_constraints]
    if o.labels:
        metadata["labels"] = {**o.labels, **metadata.get("labels", {})}
    if o.annotations:
        metadata["annotations"] = {**o.annotations, **metadata.get("annotations", {})}
