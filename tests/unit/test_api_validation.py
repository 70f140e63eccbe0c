"""Issue 17: the models refuse values that can never run, naming the field, and accept every valid edge case.

Properties (hypothesis) compare the models with small oracles written from Kubernetes' own validation
(apimachinery's IsQualifiedName / IsValidLabelValue, core's ValidateTolerations) and with what the operator
derives from a name, so the CRD's rules (generated from the same models) hold for the inputs nobody listed.
"""

from __future__ import annotations

import copy
import math
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from yolo_operator.api import SpecError, parse_resource
from yolo_operator.api.ultralytics_args import (
    ARG_BOUNDS,
    EXTRA_TRAIN_ARGS,
    SPEC_FIELD_OF_RESERVED,
    extra_arg_problem,
)
from yolo_operator.quantity import parse_quantity
from yolo_operator.render import inference_service as render_service
from yolo_operator.render import train_job as render_train
from yolo_workloads.contract import RESERVED_TRAIN_ARGS

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
TRAIN = yaml.safe_load((SAMPLES / "yolotrainjob.yaml").read_text())
SERVICE = yaml.safe_load((SAMPLES / "yoloinferenceservice.yaml").read_text())
PROPERTY = settings(max_examples=200, deadline=None, database=None)


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return doc


def _problems(doc: dict[str, Any]) -> list[str]:
    try:
        parse_resource(doc)
    except SpecError as err:
        return err.problems
    return []


# (id, base, dotted path, value, the field the problem must name, a fragment of its message)
REFUSED: list[tuple[str, dict[str, Any], str, Any, str, str]] = [
    ("cpu-negative-text", TRAIN, "spec.resources.cpu", "-1", "spec.resources.cpu", "non-negative"),
    ("cpu-negative-number", TRAIN, "spec.resources.cpu", -0.5, "spec.resources.cpu", "non-negative"),
    ("memory-negative", SERVICE, "spec.resources.memory", "-32Gi", "spec.resources.memory", "non-negative"),
    ("shm-malformed", TRAIN, "spec.resources.shmSize", "8 GB", "spec.resources.shmSize", "quantity"),
    ("cpu-boolean", TRAIN, "spec.resources.cpu", True, "spec.resources.cpu", "quantity"),
    ("cpu-list", TRAIN, "spec.resources.cpu", [1], "spec.resources.cpu", "quantity"),
    ("cpu-nan", TRAIN, "spec.resources.cpu", math.nan, "spec.resources.cpu", "non-negative"),
    ("selector-key", TRAIN, "spec.resources.nodeSelector", {"bad key!": "x"}, "spec.resources.nodeSelector", ""),
    (
        "selector-key-prefix-long",
        TRAIN,
        "spec.resources.nodeSelector",
        {"a" * 254 + "/k": "x"},
        "spec.resources.nodeSelector",
        "label keys",
    ),
    ("selector-value", TRAIN, "spec.resources.nodeSelector", {"d": "has space"}, "spec.resources.nodeSelector", ""),
    ("selector-value-long", TRAIN, "spec.resources.nodeSelector", {"d": "a" * 64}, "spec.resources.nodeSelector", ""),
    (
        "toleration-exists-value",
        TRAIN,
        "spec.resources.tolerations",
        [{"key": "k", "operator": "Exists", "value": "v"}],
        "spec.resources.tolerations[0].value",
        "value must be empty",
    ),
    (
        "toleration-no-key-equal",
        TRAIN,
        "spec.resources.tolerations",
        [{"operator": "Equal", "value": "v"}],
        "spec.resources.tolerations[0].operator",
        "operator must be Exists",
    ),
    (
        "toleration-seconds-noschedule",
        SERVICE,
        "spec.resources.tolerations",
        [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
        "spec.resources.tolerations[0].tolerationSeconds",
        "NoExecute",
    ),
    (
        "toleration-bad-key",
        TRAIN,
        "spec.resources.tolerations",
        [{"key": "bad key", "operator": "Exists"}],
        "spec.resources.tolerations[0].key",
        "pattern",
    ),
    (
        "toleration-key-prefix-long",
        TRAIN,
        "spec.resources.tolerations",
        [{"key": "a" * 254 + "/k", "operator": "Exists"}],
        "spec.resources.tolerations[0].key",
        "prefix",
    ),
    ("output-dotdot", TRAIN, "spec.output.path", "../other-job", "spec.output.path", "'..' segment"),
    ("output-absolute", TRAIN, "spec.output.path", "/etc", "spec.output.path", "no leading '/'"),
    (
        "data-dotdot",
        TRAIN,
        "spec.data",
        {"volume": {"claimName": "d", "path": "sets/../../x.yaml"}},
        "spec.data.volume.path",
        "'..' segment",
    ),
    (
        "weights-dotdot",
        SERVICE,
        "spec.model",
        {"weights": {"claimName": "w", "path": ".."}},
        "spec.model.weights.path",
        "'..' segment",
    ),
    ("service-name-digit", SERVICE, "metadata.name", "1-service", "metadata.name", "pattern"),
    ("image-empty", TRAIN, "spec.resources.image", "", "spec.resources.image", "at least 1"),
    ("image-padded", SERVICE, "spec.resources.image", " repo/img:1 ", "spec.resources.image", "pattern"),
    ("extra-mosaic", TRAIN, "spec.train.extraArgs", {"mosaic": 1.5}, "spec.train.extraArgs", "mosaic must be"),
    ("extra-lrf", TRAIN, "spec.train.extraArgs", {"lrf": -0.1}, "spec.train.extraArgs", "lrf must be >= 0"),
    ("extra-nbs", TRAIN, "spec.train.extraArgs", {"nbs": 0}, "spec.train.extraArgs", "nbs must be >= 1"),
    ("extra-fraction-0", TRAIN, "spec.train.extraArgs", {"fraction": 0}, "spec.train.extraArgs", "fraction must"),
    ("extra-fraction-2.5", TRAIN, "spec.train.extraArgs", {"fraction": 2.5}, "spec.train.extraArgs", "whole number"),
    ("extra-scale", TRAIN, "spec.train.extraArgs", {"scale": 2}, "spec.train.extraArgs", "scale must be"),
]


@pytest.mark.parametrize(
    ("base", "path", "value", "field", "fragment"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_value_that_can_never_run_is_refused_naming_the_field(
    base: dict[str, Any], path: str, value: Any, field: str, fragment: str
) -> None:
    problems = _problems(_with(base, path, value))
    naming = [p for p in problems if p.startswith(field)]
    assert naming, f"no problem names {field}: {problems}"
    assert any(fragment in p for p in naming), naming


# (id, base, dotted path, value): valid edge cases, the same the cluster test sends to the API server
ACCEPTED: list[tuple[str, dict[str, Any], str, Any]] = [
    ("cpu-half-number", TRAIN, "spec.resources.cpu", 0.5),
    ("cpu-half-service", SERVICE, "spec.resources.cpu", 0.5),
    ("memory-number", SERVICE, "spec.resources.memory", 1e9),
    ("quantities-text", TRAIN, "spec.resources", {"cpu": "500m", "memory": "1.5Gi", "shmSize": "+1e9"}),
    ("cpu-zero", TRAIN, "spec.resources", {"cpu": 0, "gpus": 0}),
    ("selector-edge", TRAIN, "spec.resources.nodeSelector", {"example.com/a_b.c-d": "", "x": "A-1_b.C"}),
    (
        "tolerations-edge",
        TRAIN,
        "spec.resources.tolerations",
        [
            {"operator": "Exists"},
            {"key": "", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "tolerationSeconds": 30},
            {"key": "example.com/gpu", "operator": "Equal", "value": "", "effect": "PreferNoSchedule"},
        ],
    ),
    ("output-root", TRAIN, "spec.output.path", ""),
    ("output-dots-in-names", TRAIN, "spec.output.path", "runs..v2/.hidden/a..b"),
    ("service-name-45", SERVICE, "metadata.name", "s" + "-9" * 22),
    ("train-name-digit", TRAIN, "metadata.name", "1-job"),
    ("extra-edges", TRAIN, "spec.train.extraArgs", {"mosaic": 0, "mixup": 1, "nbs": 1, "fraction": 1}),
    ("extra-fraction-count", TRAIN, "spec.train.extraArgs", {"fraction": 500}),
]


@pytest.mark.parametrize(("base", "path", "value"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_valid_edge_case_is_accepted(base: dict[str, Any], path: str, value: Any) -> None:
    assert _problems(_with(base, path, value)) == []


def test_cpu_half_renders_a_quantity_kubernetes_reads() -> None:
    job = parse_resource(_with(TRAIN, "spec.resources.cpu", 0.5))
    assert job.spec.resources.cpu == 0.5
    assert parse_quantity(job.spec.resources.cpu) == parse_quantity("500m")
    assert parse_resource(job.to_wire()) == job


# --- quantities ---------------------------------------------------------------------------------------------------

_SUFFIX = st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti", "e3", "E2", "e-3", "n", "u"])
_MANTISSA = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.integers(0, 999).map(lambda n: f".{n}"),
)


@PROPERTY
@given(mantissa=_MANTISSA, suffix=_SUFFIX, sign=st.sampled_from(["", "+", "-"]))
def test_text_quantity_is_accepted_exactly_when_non_negative(mantissa: str, suffix: str, sign: str) -> None:
    text = f"{sign}{mantissa}{suffix}"
    problems = _problems(_with(TRAIN, "spec.resources.memory", text))
    if sign == "-":
        assert any(p.startswith("spec.resources.memory:") for p in problems), text
    else:
        assert problems == [], text
        assert parse_quantity(text) >= 0


@PROPERTY
@given(value=st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False)))
def test_number_quantity_is_accepted_exactly_when_non_negative(value: float) -> None:
    problems = _problems(_with(TRAIN, "spec.resources.cpu", value))
    assert (problems == []) == (value >= 0), (value, problems)
    if value >= 0:
        rendered = render_common_quantity(value)
        assert parse_quantity(rendered) == parse_quantity(str(value))


def render_common_quantity(value: float) -> str:
    from yolo_operator.render.common import quantity_str

    text = quantity_str(value)
    assert re.fullmatch(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text), text  # a quantity the API server parses
    return text


# --- paths ----------------------------------------------------------------------------------------------------------

_SEGMENT = st.sampled_from(["a", "b.pt", ".", "..", "...", "..b", "a..", ".hidden", ""])


@PROPERTY
@given(segments=st.lists(_SEGMENT, min_size=1, max_size=6), absolute=st.booleans())
def test_an_accepted_path_never_leaves_its_volume(segments: list[str], absolute: bool) -> None:
    path = ("/" if absolute else "") + "/".join(segments)
    problems = _problems(_with(TRAIN, "spec.output.path", path))
    refused = any(p.startswith("spec.output.path:") for p in problems)
    assert refused == (path.startswith("/") or ".." in path.split("/")), (path, problems)
    if not refused:
        root = "/claims/out"
        assert posixpath.normpath(posixpath.join(root, path, "job")).startswith(root + "/")


# --- label keys and values, as apimachinery validates them ------------------------------------------------------------

_NAME_CHARS = "abcXYZ019-_."
_PREFIX_CHARS = "abz09-."


def k8s_label_name_ok(name: str) -> bool:
    """apimachinery IsQualifiedName's name part, written without the regex under test."""
    alnum = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return (
        0 < len(name) <= 63 and name[0] in alnum and name[-1] in alnum and all(c in alnum or c in "-_." for c in name)
    )


def k8s_subdomain_ok(prefix: str) -> bool:
    lower = set("abcdefghijklmnopqrstuvwxyz0123456789")
    labels = prefix.split(".")
    return 0 < len(prefix) <= 253 and all(
        lab and lab[0] in lower and lab[-1] in lower and all(c in lower or c == "-" for c in lab) for lab in labels
    )


def k8s_qualified_name_ok(key: str) -> bool:
    parts = key.split("/")
    if len(parts) == 1:
        return k8s_label_name_ok(key)
    return len(parts) == 2 and k8s_subdomain_ok(parts[0]) and k8s_label_name_ok(parts[1])


_KEYS = st.one_of(
    st.text(_NAME_CHARS, max_size=70),
    st.tuples(st.text(_PREFIX_CHARS, max_size=20), st.text(_NAME_CHARS, max_size=10)).map("/".join),
    st.text("a/ !", max_size=5),
)


@PROPERTY
@given(key=_KEYS, value=st.text(_NAME_CHARS + " /", max_size=70))
def test_node_selector_is_accepted_exactly_when_kubernetes_accepts_it(key: str, value: str) -> None:
    problems = _problems(_with(TRAIN, "spec.resources.nodeSelector", {key: value}))
    kubernetes_ok = k8s_qualified_name_ok(key) and (value == "" or k8s_label_name_ok(value))
    assert (problems == []) == kubernetes_ok, (key, value, problems)
    assert all(p.startswith("spec.resources.nodeSelector") for p in problems)


# --- tolerations, as core/v1 ValidateTolerations does ---------------------------------------------------------------


def k8s_toleration_ok(t: dict[str, Any]) -> bool:
    key, operator, value = t.get("key", ""), t.get("operator", "Equal"), t.get("value", "")
    if key and not k8s_qualified_name_ok(key):
        return False
    if not key and operator != "Exists":
        return False
    if "tolerationSeconds" in t and t.get("effect") != "NoExecute":
        return False
    if operator == "Exists":
        return value == ""
    return value == "" or k8s_label_name_ok(value)


_TOLERATION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["", "k", "nvidia.com/gpu", "bad key", "a/b/c"]),
        "operator": st.sampled_from(["Exists", "Equal"]),
        "value": st.sampled_from(["", "v", "bad value"]),
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": st.integers(-5, 3600),
    },
)


@PROPERTY
@given(toleration=_TOLERATION)
def test_toleration_is_accepted_exactly_when_kubernetes_accepts_it(toleration: dict[str, Any]) -> None:
    problems = _problems(_with(SERVICE, "spec.resources.tolerations", [toleration]))
    assert (problems == []) == k8s_toleration_ok(toleration), (toleration, problems)
    assert all(p.startswith("spec.resources.tolerations[0]") for p in problems)


# --- names: every child the operator derives from a name is valid ----------------------------------------------------

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_NAMES = st.text("ab09-", min_size=1, max_size=70)


@PROPERTY
@given(name=_NAMES)
def test_service_name_is_accepted_only_when_its_service_can_exist(name: str) -> None:
    problems = _problems(_with(SERVICE, "metadata.name", name))
    if problems:
        assert all(p.startswith("metadata.name") for p in problems), problems
        return
    assert len(name) <= 63 and DNS_1035_LABEL.fullmatch(render_service.service_name(name))
    assert DNS_1123_LABEL.fullmatch(render_service.deployment_name(name))
    assert DNS_1123_LABEL.fullmatch(render_service.pdb_name(name))
    config = render_service.config_map_name(name)
    assert len(config) <= 253 and DNS_1123_LABEL.fullmatch(config)


@PROPERTY
@given(name=_NAMES)
def test_train_job_name_is_accepted_only_when_its_jobs_can_exist(name: str) -> None:
    problems = _problems(_with(TRAIN, "metadata.name", name))
    if problems:
        assert all(p.startswith("metadata.name") for p in problems), problems
        return
    for component in (render_train.TUNING, render_train.TRAINING):
        job = render_train.job_name(name, component)
        # the Job's name is also the value of its pods' job-name label: at most 63 characters
        assert len(job) <= 63 and DNS_1123_LABEL.fullmatch(job), job
        assert DNS_1123_LABEL.fullmatch(render_train.config_map_name(name, component))


@pytest.mark.parametrize("name", ["svc", "a" * 45, "s-1"])
def test_service_names_at_the_edge_are_accepted(name: str) -> None:
    assert _problems(_with(SERVICE, "metadata.name", name)) == []


# --- Ultralytics argument ranges -----------------------------------------------------------------------------------


@PROPERTY
@given(name=st.sampled_from(sorted(ARG_BOUNDS)), value=st.floats(-3, 3, allow_nan=False))
def test_extra_arg_outside_ultralytics_range_is_refused_naming_it(name: str, value: float) -> None:
    if EXTRA_TRAIN_ARGS[name] == "integer":
        value = round(value)
    problem = extra_arg_problem(name, value)
    bounds = ARG_BOUNDS[name]
    inside = bounds.contains(value) and not (name == "fraction" and isinstance(value, float) and value > 1)
    assert (problem is None) == inside, (name, value, problem)
    if problem:
        assert problem.startswith(name)
        assert any(
            p.startswith("spec.train.extraArgs") for p in _problems(_with(TRAIN, "spec.train.extraArgs", {name: value}))
        )


@pytest.mark.parametrize("name", sorted(RESERVED_TRAIN_ARGS))
def test_every_argument_the_workload_reserves_is_refused_in_extra_args_naming_it(name: str) -> None:
    # the one list the workload refuses too (`yolo-workload train` exits 2): nothing the API lets through fails later
    problems = _problems(_with(TRAIN, "spec.train.extraArgs", {name: 1}))
    instead = SPEC_FIELD_OF_RESERVED[name]
    said = f"the operator sets these from the spec, not extraArgs: {name} ({instead})"
    assert any(p.startswith("spec.train.extraArgs") and p.endswith(said) for p in problems), problems
    if instead.startswith("spec."):  # the field it names is one the user can write
        schema = yaml.safe_load((SAMPLES.parents[1] / "crds" / "yolo-operator.io_yolotrainjobs.yaml").read_text())
        node = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in instead.split("."):
            assert part in node.get("properties", {}), (instead, part)
            node = node["properties"][part]


def test_several_reserved_arguments_are_named_together_each_with_its_field() -> None:
    problems = _problems(_with(TRAIN, "spec.train.extraArgs", {"lr0": 0.02, "mosaic": 0.5, "batch": 32}))
    said = "the operator sets these from the spec, not extraArgs: batch (spec.train.batch) lr0 (spec.train.lr0)"
    assert [p for p in problems if p.startswith("spec.train.extraArgs")] == [f"spec.train.extraArgs: {said}"], problems


# --- the wire form of anything accepted is accepted again, unchanged ------------------------------------------------


@PROPERTY
@given(
    cpu=st.one_of(st.floats(0, 1e6), st.integers(0, 10**6), st.tuples(_MANTISSA, _SUFFIX).map("".join)),
    selector=st.dictionaries(_KEYS, st.text(_NAME_CHARS, max_size=8), max_size=3),
    tolerations=st.lists(_TOLERATION, max_size=3),
)
def test_accepted_resources_round_trip_through_the_wire_form(
    cpu: float | str, selector: dict[str, str], tolerations: list[dict[str, Any]]
) -> None:
    doc = _with(TRAIN, "spec.resources", {"cpu": cpu, "nodeSelector": selector, "tolerations": tolerations})
    if _problems(doc):
        return
    job = parse_resource(doc)
    assert parse_resource(job.to_wire()) == job
