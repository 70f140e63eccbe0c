"""The extraArgs table (types and ranges the CRD enforces) stays in step with the pinned Ultralytics' own checks.

If Ultralytics moves an argument between its CFG_*_KEYS sets or changes a minimum, these tests fail and name it,
so the API server never refuses what Ultralytics accepts nor accepts what it refuses at train start.
"""

from __future__ import annotations

import ast
import re
from types import SimpleNamespace
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yolo_operator.api.train_job import CHOSEN_BY_AUTO_OPTIMIZER, TrainSettings
from yolo_operator.api.ultralytics_args import ARG_BOUNDS, EXTRA_TRAIN_ARGS, FRACTION, Bounds, extra_arg_problem

pytestmark = pytest.mark.workloads

cfg = pytest.importorskip("ultralytics.cfg")


def _expected(name: str) -> tuple[set[str], Bounds | None]:
    """The JSON types and range Ultralytics' key sets imply for `name`."""
    if name in cfg.CFG_BOOL_KEYS:
        return {"boolean"}, None
    if name in cfg.CFG_INT_KEYS:
        minimum = cfg.CFG_INT_MIN.get(name)
        return {"integer"}, None if minimum is None else Bounds(minimum)
    if name == "fraction":
        return {"number"}, Bounds(0.0, None, exclusive_minimum=True)
    if name in cfg.CFG_FRACTION_KEYS or name == "scale":
        return {"number"}, FRACTION
    if name in cfg.CFG_FLOAT_KEYS:
        return {"number"}, None
    return {"boolean", "integer", "number", "string"}, None  # unchecked by Ultralytics: any type, no range


@pytest.mark.parametrize("name", sorted(EXTRA_TRAIN_ARGS))
def test_type_and_range_match_ultralytics_key_sets(name: str) -> None:
    types, bounds = _expected(name)
    assert EXTRA_TRAIN_ARGS[name] in types, f"{name}: Ultralytics checks it as {types}"
    assert ARG_BOUNDS.get(name) == bounds, f"{name}: Ultralytics' range is {bounds}, ours {ARG_BOUNDS.get(name)}"


def _accepted_by_ultralytics(name: str, value: Any) -> bool:
    try:
        cfg.check_cfg({name: value}, hard=True)
    except (TypeError, ValueError):
        return False
    return True


_NUMERIC = sorted(n for n, kind in EXTRA_TRAIN_ARGS.items() if kind in {"number", "integer"})


@settings(max_examples=400, deadline=None, database=None)
@given(name=st.sampled_from(_NUMERIC), data=st.data())
def test_refused_exactly_when_ultralytics_refuses(name: str, data: st.DataObject) -> None:
    ints = st.integers(-5, 2000)
    floats = st.one_of(st.floats(-2, 2, allow_nan=False), st.sampled_from([0.0, 1.0, 1e-9, 1.5, 2.5]))
    value = data.draw(ints if EXTRA_TRAIN_ARGS[name] == "integer" else st.one_of(ints, floats))
    ours = extra_arg_problem(name, value)
    assert (ours is None) == _accepted_by_ultralytics(name, value), (name, value, ours)


def _optimizer_names_of_ultralytics() -> set[str]:
    """The optimizers Ultralytics' build_optimizer knows, read from the error it raises for an unknown one."""
    from ultralytics.engine.trainer import BaseTrainer

    with pytest.raises(NotImplementedError) as refused:
        BaseTrainer.build_optimizer(_trainer_stub(), _tiny_model(), name="NoSuchOptimizer")
    return set(ast.literal_eval(re.search(r"\{.*\}", str(refused.value)).group(0)))  # type: ignore[union-attr]


def _tiny_model() -> Any:
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel("yolov8n.yaml", nc=2, verbose=False)


def _trainer_stub(**args: Any) -> Any:
    return SimpleNamespace(args=SimpleNamespace(**args), data={"nc": 2})


def test_spec_optimizers_are_ultralytics_own() -> None:
    ours = set(get_args(TrainSettings.model_fields["optimizer"].annotation))
    assert {n.lower() for n in ours} == {n.lower() for n in _optimizer_names_of_ultralytics()}


@pytest.mark.parametrize("name", sorted(get_args(TrainSettings.model_fields["optimizer"].annotation)))
def test_every_spec_optimizer_builds(name: str) -> None:
    from ultralytics.engine.trainer import BaseTrainer

    optimizer = BaseTrainer.build_optimizer(_trainer_stub(lr0=0.01, warmup_bias_lr=0.1), _tiny_model(), name=name)
    assert optimizer.param_groups


def test_auto_optimizer_overwrites_exactly_what_the_spec_refuses_beside_it() -> None:
    """optimizer auto ignores lr0 and CHOSEN_BY_AUTO_OPTIMIZER; the spec refuses them with it, and nothing else."""
    from ultralytics.engine.trainer import BaseTrainer

    set_by_user = {name: 0.0123 for name in EXTRA_TRAIN_ARGS if EXTRA_TRAIN_ARGS[name] == "number"}
    stub = _trainer_stub(optimizer="auto", lr0=0.0123, **set_by_user)
    BaseTrainer.build_optimizer(stub, _tiny_model(), name="auto")
    overwritten = {name for name, value in vars(stub.args).items() if value != 0.0123} - {"optimizer"}
    assert overwritten == {"lr0", *CHOSEN_BY_AUTO_OPTIMIZER}
