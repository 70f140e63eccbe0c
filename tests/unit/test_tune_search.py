"""Tuning that keeps accuracy and searches for real: the batch rule (trajectory), the climb (search), the budget.

Pure code: the search is driven with a model of throughput instead of GPU trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_lifecycle_train_job import NOW, RESULT, step
from test_render_train_job import config_of, make_job
from yolo_operator.lifecycle.train_job import CreateTrainingJob, Observed, StepState, TrainChoice, decide
from yolo_operator.lifecycle.tuning_cache import cache_key
from yolo_operator.render.train_job import RenderOptions, training_objects, tune_config
from yolo_workloads.contract import IntRange, SearchSpace, TrainConfig, encode_result
from yolo_workloads.tune.search import NOISE, PRUNE_SHARE, Search, Space, TrialSettings, tuning_budget
from yolo_workloads.tune.space import make_bounds
from yolo_workloads.tune.trajectory import (
    accumulate,
    effective_batch,
    keeps_trajectory,
    norm_batch,
    resolve_rule,
    switch_epoch,
    trajectory_batches,
    warmup_batch,
)

pytestmark = pytest.mark.unit

H200 = "NVIDIA-H200"


# --- the batch rule -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 4, 8, 16, 32, 64])
def test_batches_up_to_nbs_take_the_defaults_optimizer_steps_and_weight_decay(batch: int) -> None:
    assert keeps_trajectory(batch, nbs=64)
    assert effective_batch(batch, 64) == effective_batch(16, 64) == 64
    # Ultralytics scales weight decay by batch * accumulate / nbs: unchanged from the defaults' 1.0.
    assert batch * accumulate(batch, 64) / 64 == 1.0


def test_a_batch_above_nbs_changes_the_trajectory_unless_nbs_grows_with_it() -> None:
    assert not keeps_trajectory(128, nbs=64)  # the measured 8-point loss: half the steps, twice the weight decay
    assert effective_batch(128, 64) == 128 and accumulate(128, 64) == 1
    assert keeps_trajectory(128, nbs=128) and not keeps_trajectory(256, nbs=128)


def test_default_rule_keeps_the_defaults_batch_so_warm_up_takes_the_same_steps() -> None:
    rule = trajectory_batches([8, 16, 32, 64, 128], nbs=64, rule="defaults")
    assert rule.batches == [16] and "warm-up included" in rule.reason
    # Without warm-up every batch of the defaults' effective batch is exact.
    assert trajectory_batches([8, 16, 32, 64, 128], nbs=64, rule="defaults", warmup_epochs=0).batches == [8, 16, 32, 64]


def test_up_to_nbs_rule_keeps_batches_up_to_nbs_and_says_why() -> None:
    rule = trajectory_batches([8, 16, 32, 64, 128, 256], nbs=64, rule="nbs")
    assert rule.batches == [8, 16, 32, 64]
    assert "batch <= 64" in rule.reason and "nbs 64" in rule.reason and "128,256" in rule.reason


def test_any_rule_keeps_every_batch_and_says_accuracy_may_differ() -> None:
    rule = trajectory_batches([8, 16, 128], nbs=64, rule="any")
    assert rule.batches == [8, 16, 128] and "accuracy may differ" in rule.reason


def test_rules_fall_back_to_a_trajectory_keeping_batch_when_the_range_excludes_16() -> None:
    assert trajectory_batches([128, 256], nbs=64, rule="nbs").batches == [16]
    assert trajectory_batches([32, 64], nbs=64, rule="defaults").batches == [32]  # the closest to 16
    assert trajectory_batches([4, 8], nbs=64, rule="defaults").batches == [8]


# --- batch norm over groups of the defaults' batch (GroupedNorm, what Auto stands for in long jobs) ------------------


@pytest.mark.parametrize(
    ("epochs", "gpus", "rule"),
    [(30, 1, "grouped"), (100, 1, "grouped"), (29, 1, "defaults"), (10, 1, "defaults"), (30, 2, "defaults"),
     (30, 0, "defaults")],
)  # fmt: skip
def test_auto_groups_batch_norm_where_it_was_measured_to_keep_accuracy(epochs: int, gpus: int, rule: str) -> None:
    assert resolve_rule("auto", epochs, gpus, "detect") == rule
    assert resolve_rule("nbs", epochs, gpus, "detect") == "nbs"  # an explicit rule is itself at any length


@pytest.mark.parametrize("task", ["segment", "pose", "obb", "classify"])
def test_auto_keeps_the_defaults_batch_for_the_tasks_it_was_not_measured_on(task: str) -> None:
    assert resolve_rule("auto", 100, 1, task) == "defaults"
    assert resolve_rule("grouped", 100, 1, task) == "grouped"  # asked for by name, it applies


def test_grouped_rule_offers_batches_up_to_nbs_and_normalises_larger_ones_in_groups_of_16() -> None:
    rule = trajectory_batches([8, 16, 32, 64, 128], nbs=64, rule="grouped")
    assert rule.batches == [8, 16, 32, 64]
    assert "batch norm over groups of 16 images" in rule.reason and "not 128" in rule.reason
    assert [norm_batch("grouped", b, 1) for b in (8, 16, 32, 64)] == [None, None, 16, 16]
    assert norm_batch("grouped", 64, 2) is None  # DDP: each GPU normalises its own share
    assert norm_batch("nbs", 64, 1) is None and norm_batch("defaults", 64, 1) is None


def test_a_tuned_batch_under_auto_trains_with_norm_groups_and_the_users_batch_never_does() -> None:
    def rendered(choice: TrainChoice, **spec: Any) -> int | None:
        return TrainConfig.model_validate(
            config_of(training_objects(make_job(**spec), choice, RenderOptions()))
        ).norm_batch

    assert tune_config(make_job()).search.batch_rule == "grouped"  # the sample: 30 epochs on one GPU
    assert tune_config(make_job(train={"epochs": 10})).search.batch_rule == "defaults"
    segment = make_job(model={"architecture": "yolov8n-seg.yaml"})  # the shapes set is labelled for the task
    assert tune_config(segment).search.batch_rule == "defaults"  # measured on detection only
    assert rendered(TrainChoice(64, 16, True, "ram")) == 16
    assert rendered(TrainChoice(16, 8, True, "none")) is None  # the defaults' batch normalises as itself
    assert rendered(TrainChoice(64, 16, True, "ram"), train={"epochs": 30, "batch": 64}) is None  # the user's
    assert rendered(TrainChoice(64, 16, True, "ram"), tuning={"batchRule": "UpToNbs"}) is None
    assert rendered(TrainChoice(64, 16, True, "ram"), tuning={"enabled": False}) is None


def _bounds(search: SearchSpace, free_gib: float = 100.0) -> list[int]:
    probe = {"fixed_bytes": 1e8, "per_image_bytes": 2e7}
    bounds = make_bounds(
        search, n_train=4000, decoded_bytes=10**9, memory_budget=64 * 2**30, cpu_budget=16, ranks=1,
        on_gpu=True, memory_probe=probe, free_memory=free_gib * 2**30,
    )  # fmt: skip
    return bounds.batches


def test_bounds_keep_batch_16_by_default_and_follow_the_rule_and_the_users_nbs() -> None:
    wide = IntRange(min=8, max=256)
    assert _bounds(SearchSpace(batch=wide)) == [16]
    assert _bounds(SearchSpace(batch=wide, batch_rule="nbs")) == [8, 16, 32, 64]
    assert _bounds(SearchSpace(batch=wide, batch_rule="nbs", nbs=128)) == [8, 16, 32, 64, 128]
    assert _bounds(SearchSpace(batch=wide, batch_rule="any")) == [8, 16, 32, 64, 128, 256]
    assert _bounds(SearchSpace(batch=wide, batch_rule="nbs"), free_gib=1.0) == [8, 16, 32]  # memory caps too


def test_on_a_cpu_only_zero_workers_and_no_amp_are_candidates_and_the_bounds_say_why() -> None:
    search = SearchSpace(fixed_batch=8, workers=IntRange(min=0, max=8), amp=[True, False], cache=["none", "ram"])
    bounds = make_bounds(
        search, n_train=400, decoded_bytes=10**9, memory_budget=2**30, cpu_budget=2, ranks=1,
        on_gpu=False, memory_probe=None, free_memory=None,
    )  # fmt: skip
    assert (bounds.batches, bounds.workers, bounds.amp, bounds.cache) == ([8], [0], [False], ["none"])
    assert any("workers 0" in note for note in bounds.notes)
    assert any("AMP off" in note for note in bounds.notes)
    assert any("RAM cache" in note for note in bounds.notes)  # 1 GB of images in half of 1 GiB does not fit


def test_a_fixed_batch_from_the_user_is_never_capped() -> None:
    assert _bounds(SearchSpace(fixed_batch=128)) == [128]


def test_the_users_nbs_warm_up_and_batch_rule_reach_the_tuner() -> None:
    config = tune_config(make_job(train={"epochs": 10, "extraArgs": {"nbs": 128, "warmup_epochs": 0}}))
    search = config.search
    assert (search.nbs, search.warmup_epochs, search.batch_rule, config.epochs) == (128, 0.0, "defaults", 10)
    config = tune_config(make_job(tuning={"batchRule": "UpToNbs"}))
    assert (config.search.batch_rule, config.search.nbs, config.search.warmup_epochs) == ("nbs", 64, 3.0)
    assert tune_config(make_job(tuning={"batchRule": "Any"})).search.batch_rule == "any"


def test_the_users_batch_wins_over_the_tuned_one() -> None:
    job = make_job(train={"batch": 128, "imgsz": 640})
    assert tune_config(job).search.fixed_batch == 128
    d = decide(job, Observed(now=NOW, tuning=step(StepState.SUCCEEDED, message=encode_result(RESULT))))
    assert CreateTrainingJob(TrainChoice(128, 12, True, "ram")) in d.actions


def test_status_says_why_the_settings_were_chosen() -> None:
    reason = "batch 16 as Ultralytics' default: the same optimizer steps, warm-up included"
    result = RESULT.model_copy(update={"reason": reason})
    d = decide(make_job(), Observed(now=NOW, tuning=step(StepState.SUCCEEDED, message=encode_result(result))))
    assert d.status.tuning is not None and d.status.tuning.reason == reason


def test_cache_key_changes_with_the_batch_rule_its_inputs_and_the_data_set_variant() -> None:
    key = cache_key(make_job().spec, H200)
    assert key != cache_key(make_job(train={"extraArgs": {"nbs": 128}}).spec, H200)
    assert key != cache_key(make_job(train={"extraArgs": {"warmup_epochs": 0}}).spec, H200)
    assert key != cache_key(make_job(tuning={"batchRule": "UpToNbs"}).spec, H200)
    crowded = make_job(data={"shapes": {"images": 4000, "variant": "crowded"}}).spec
    assert key != cache_key(crowded, H200)


# --- the search -----------------------------------------------------------------------------------------------------

SPACE = Space(batches=[8, 16, 32, 64], workers=[2, 4, 8, 16], amp=[True, False], cache=["none", "ram"])


def _throughput(s: TrialSettings) -> float:
    """A GPU-like model: the loader bounds workers, small batches waste the GPU, AMP helps, RAM helps a little."""
    loader = 70.0 * s.workers * (1.1 if s.cache == "ram" else 1.0)
    gpu = 1400.0 * s.batch / (s.batch + 8) * (1.0 if s.amp else 0.6)
    return min(loader, gpu)


def _climb(model: Callable[[TrialSettings], float], trials: int = 30) -> Search:
    search = Search(SPACE, images_per_run=40_000.0)
    for _ in range(trials):
        settings = search.next()
        if settings is None:
            break
        search.record(settings, model(settings))
    return search


def test_the_climb_measures_each_setting_once_and_stops_at_the_best() -> None:
    search = _climb(_throughput)
    assert len(search.tried) == len(set(search.tried))  # distinct settings, no re-measuring
    assert search.tried[0] == TrialSettings(64, 16, True, "ram")  # the first guess
    assert len(search.tried) < SPACE.size() // 4  # a climb, not an enumeration
    best = max((TrialSettings(b, w, a, c) for b in SPACE.batches for w in SPACE.workers
                for a in SPACE.amp for c in SPACE.cache), key=_throughput)  # fmt: skip
    assert search.best() == best and search.next() is None


def test_the_climb_moves_when_a_neighbour_wins() -> None:
    # Here 8 workers beat 16 (a CPU-starved host): the climb must move there and explore around it.
    def model(s: TrialSettings) -> float:
        return 1000.0 - abs(s.workers - 8) * 20 - (64 - s.batch) - (0 if s.amp else 300)

    search = _climb(model)
    best = search.best()
    assert best is not None and best.workers == 8 and best.batch == 64
    assert TrialSettings(64, 4, True, "ram") in search.tried  # explored beyond the new best
    assert len(search.tried) == len(set(search.tried))


def test_a_pinned_batch_starts_from_ultralytics_loader_and_widens_it_only_on_a_measured_win() -> None:
    pinned = Space(batches=[16], workers=[2, 4, 8, 12], amp=[True, False], cache=["none", "ram"])
    search = Search(pinned, images_per_run=40_000.0)
    first = search.next()
    assert first == TrialSettings(16, 8, True, "none")  # Ultralytics' batch, workers and cache
    assert pinned.neighbours(first)[:2] == [TrialSettings(16, 12, True, "none"), TrialSettings(16, 8, True, "ram")]
    search.record(first, 346.0)
    wider = search.next()
    search.record(wider, 347.0)  # a tie: measured again, never taken on one trial
    assert search.to_repeat() is not None
    search.record(wider, 340.0)
    search.record(first, 350.0)
    assert search.best() == first
    few = Space(batches=[16], workers=[1, 2], amp=[False], cache=["none"])  # a two-core host
    assert few.first_guess() == TrialSettings(16, 2, False, "none")


def test_a_failed_first_guess_steps_away_from_it() -> None:
    search = Search(SPACE, images_per_run=1000.0)
    first = search.next()
    assert first is not None
    search.record(first, None)  # out of memory
    following = search.next()
    assert following is not None and following != first and following in SPACE.neighbours(first)


def test_the_objective_is_training_time_so_a_cache_fill_can_lose() -> None:
    search = Search(SPACE, images_per_run=10_000.0, one_off_seconds={"ram": 20.0})
    ram, none = TrialSettings(64, 16, True, "ram"), TrialSettings(64, 16, True, "none")
    search.record(ram, 1000.0)  # 10 s + 20 s fill
    search.record(none, 900.0)  # 11.1 s
    assert search.best() == none
    search.images_per_run = 1_000_000.0  # a long job pays the fill once and gains every epoch
    assert search.best() == ram


def test_hopeless_trials_are_pruned_only_after_a_round_of_workers() -> None:
    search = Search(SPACE, images_per_run=1000.0)
    search.record(TrialSettings(64, 16, True, "ram"), 1000.0)
    slow = PRUNE_SHARE * 1000.0 - 1
    assert not search.should_prune(slow, step=3, workers=2)  # too early to judge
    assert not search.should_prune(slow, step=8, workers=16)  # not yet a round of 16 workers
    assert search.should_prune(slow, step=16, workers=16)
    assert not search.should_prune(PRUNE_SHARE * 1000.0 + 1, step=16, workers=16)


def test_a_setting_is_measured_again_only_when_the_best_two_are_within_noise() -> None:
    a, b = TrialSettings(64, 16, True, "ram"), TrialSettings(64, 8, True, "ram")
    clear = Search(SPACE, images_per_run=1000.0)
    clear.record(a, 1000.0)
    clear.record(b, 1000.0 * (1 - 2 * NOISE))
    assert clear.to_repeat() is None

    close = Search(SPACE, images_per_run=1000.0)
    close.record(a, 1000.0)
    close.record(b, 1000.0 * (1 - NOISE / 2))
    again = close.to_repeat()
    assert again == a
    close.record(a, 990.0)
    assert close.to_repeat() == b
    close.record(b, 985.0)
    assert close.to_repeat() is None  # both measured twice: the medians decide


@pytest.mark.parametrize(
    ("estimated", "expected"),
    [(None, 120.0), (76.0, 30.0), (1000.0, 100.0), (5000.0, 120.0)],
)
def test_the_budget_is_a_tenth_of_the_training_at_least_30_s_at_most_the_cap(
    estimated: float | None, expected: float
) -> None:
    assert tuning_budget(120.0, 0.1, 30.0, estimated) == expected


# --- where to augment: Ultralytics' loader or the GPU path, when the spec offers both ------------------------------


def test_offered_both_at_a_pinned_batch_the_climb_starts_on_ultralytics_loader_and_measures_the_gpu_path_next() -> None:
    both = Space(batches=[16], workers=[2, 4, 8], amp=[True], cache=["none", "ram"], augmentation=["cpu", "gpu"])
    search = Search(both, images_per_run=40_000.0)
    first = search.next()
    assert first == TrialSettings(16, 8, True, "none", "cpu")
    search.record(first, 350.0)
    second = search.next()
    assert second == TrialSettings(16, 8, True, "none", "gpu")  # the comparison asked for (uncached: may decode)
    search.record(second, 500.0)
    assert search.best() == second and both.size() == 12
    assert SPACE.first_guess().augmentation == "cpu" and SPACE.size() == 64  # not offered: as before


def test_offered_both_over_a_batch_range_the_climb_starts_on_the_gpu_path_at_the_largest_batch() -> None:
    wide = Space(batches=[16, 32, 64], workers=[4, 16], amp=[True], cache=["ram"], augmentation=["cpu", "gpu"])
    first = wide.first_guess()
    assert first == TrialSettings(64, 4, True, "ram", "gpu")  # the path measured faster at large batches
    assert wide.neighbours(first)[0] == TrialSettings(64, 16, True, "ram", "cpu")  # the loader, with every worker
    assert TrialSettings(64, 16, True, "ram", "gpu") in wide.neighbours(first)  # more workers stay a step away
    loader_only = Space(batches=[16, 32, 64], workers=[4, 16], amp=[True], cache=["ram"], augmentation=["cpu"])
    assert loader_only.first_guess().augmentation == "cpu"


@pytest.mark.parametrize(
    ("workers", "augmentation", "cache", "expected"),
    [
        ([2, 4, 8, 16], "gpu", "ram", 4),
        ([2, 8, 16], "gpu", "ram", 2),
        ([8, 16], "gpu", "ram", 8),
        ([2, 4, 8, 16], "cpu", "ram", 16),
        ([2, 4, 8, 16], "gpu", "none", 16),  # uncached, the workers may decode JPEGs
    ],
)
def test_the_gpu_paths_climb_starts_at_four_workers_on_the_ram_cache_or_the_fewest_allowed(
    workers: list[int], augmentation: str, cache: str, expected: int
) -> None:
    space = Space(batches=[16, 32, 64], workers=workers, amp=[True], cache=[cache], augmentation=[augmentation])
    assert space.first_guess().workers == expected


def test_the_gpu_path_is_offered_on_a_gpu_only_and_without_an_offer_the_configs_own_is_the_only_one() -> None:
    def bounds(on_gpu: bool) -> Any:
        return make_bounds(
            SearchSpace(fixed_batch=16, augmentation=["cpu", "gpu"]), n_train=400, decoded_bytes=10**6,
            memory_budget=2**33, cpu_budget=8, ranks=1, on_gpu=on_gpu, memory_probe=None, free_memory=None,
        )  # fmt: skip

    assert bounds(True).augmentation == ["cpu", "gpu"]
    on_cpu = bounds(False)
    assert on_cpu.augmentation == ["cpu"] and "gpu is tried on a GPU only" in on_cpu.augmentation_note

    def alone(augmentation: str) -> Any:
        return make_bounds(
            SearchSpace(fixed_batch=16), n_train=400, decoded_bytes=10**6, memory_budget=2**33, cpu_budget=8,
            ranks=1, on_gpu=True, memory_probe=None, free_memory=None, augmentation=augmentation,
        )  # fmt: skip

    assert alone("cpu").augmentation == ["cpu"] and alone("gpu").augmentation == ["gpu"]  # nothing offered


def test_tuning_offers_the_gpu_path_where_it_can_train_and_training_follows_its_choice() -> None:
    plain = make_job()  # detection on a GPU: both paths measured unless the spec says otherwise
    assert tune_config(plain).search.augmentation == ["cpu", "gpu"] and tune_config(plain).augmentation == "cpu"
    cpu_pod = {"gpus": 0, "cpu": 4, "memory": "8Gi"}
    for cannot in (
        make_job(resources=cpu_pod),
        make_job(model={"architecture": "yolov8n-seg.yaml"}),
        make_job(train={"extraArgs": {"mixup": 0.2}}),
        make_job(tuning={"augmentation": ["cpu"]}),
    ):  # the config's text as before the field existed
        assert tune_config(cannot).search.augmentation is None
    assert tune_config(make_job(tuning={"augmentation": ["gpu"]})).search.augmentation == ["gpu"]
    chose_gpu = encode_result(RESULT.model_copy(update={"augmentation": "gpu"}))
    d = decide(plain, Observed(now=NOW, tuning=step(StepState.SUCCEEDED, message=chose_gpu)))
    assert CreateTrainingJob(TrainChoice(64, 12, True, "ram", "gpu")) in d.actions
    assert d.status.tuning is not None and d.status.tuning.augmentation == "gpu"
    trained = TrainConfig.model_validate(
        config_of(training_objects(plain, TrainChoice(64, 12, True, "ram", "gpu"), RenderOptions()))
    )
    assert trained.augmentation == "gpu"
    on_cpu = config_of(training_objects(plain, TrainChoice(64, 12, True, "ram"), RenderOptions()))
    cpu_alone = make_job(tuning={"augmentation": ["cpu"]})
    assert on_cpu == config_of(training_objects(cpu_alone, TrainChoice(64, 12, True, "ram"), RenderOptions()))
    assert on_cpu["augmentation"] == "cpu"
    fixed = make_job(train={"augmentation": "cpu"}, tuning={"augmentation": ["cpu", "gpu"]})
    assert (tune_config(fixed).augmentation, tune_config(fixed).search.augmentation) == ("cpu", None)  # tried alone
    d = decide(fixed, Observed(now=NOW, tuning=step(StepState.SUCCEEDED, message=chose_gpu)))
    assert CreateTrainingJob(TrainChoice(64, 12, True, "ram", "cpu")) in d.actions  # ...and wins


def test_cache_key_follows_where_trials_augmented_and_stays_put_for_jobs_measuring_the_cpu_path_alone() -> None:
    key = cache_key(make_job().spec, H200)
    assert key == cache_key(make_job(tuning={"augmentation": ["cpu", "gpu"]}).spec, H200)  # the default, written out
    assert key != cache_key(make_job(tuning={"augmentation": ["cpu"]}).spec, H200)
    assert key != cache_key(make_job(train={"augmentation": "gpu"}).spec, H200)  # trials measured another path
    cpu_only = make_job(train={"extraArgs": {"cutmix": 0.5}})  # the GPU path cannot train it: cpu alone, unasked
    assert cache_key(cpu_only.spec, H200) == cache_key(
        make_job(train={"extraArgs": {"cutmix": 0.5}}, tuning={"augmentation": ["cpu"]}).spec, H200
    )


# --- warm-up at the defaults' batch, then the tuned one --------------------------------------------------------------


def test_defaults_then_nbs_offers_batches_up_to_nbs_and_says_warm_up_runs_at_16() -> None:
    rule = trajectory_batches([8, 16, 32, 64, 128], nbs=64, rule="defaults_then_nbs")
    assert rule.batches == [8, 16, 32, 64] and "16 during it" in rule.reason


def test_training_warms_up_at_16_only_for_a_tuned_larger_batch_on_one_gpu() -> None:
    def rendered(choice: TrainChoice, **spec: Any) -> int | None:
        job = make_job(tuning={"batchRule": "DefaultsThenNbs"}, **spec)
        return TrainConfig.model_validate(config_of(training_objects(job, choice, RenderOptions()))).warmup_batch

    assert rendered(TrainChoice(64, 16, True, "ram")) == 16
    assert rendered(TrainChoice(16, 16, True, "ram")) is None  # already the defaults' batch
    assert rendered(TrainChoice(64, 16, True, "ram"), train={"batch": 64}) is None  # the user's batch is theirs
    assert rendered(TrainChoice(64, 16, True, "ram"), train={"extraArgs": {"warmup_epochs": 0}}) is None
    assert rendered(TrainChoice(64, 16, True, "ram"), resources={"gpus": 2, "cpu": 16, "memory": "64Gi"}) is None
    plain = make_job()  # batchRule Defaults: never a switch
    assert (
        TrainConfig.model_validate(
            config_of(training_objects(plain, TrainChoice(64, 16, True, "ram"), RenderOptions()))
        ).warmup_batch
        is None
    )


def test_the_switch_comes_after_ultralytics_warm_up_epochs() -> None:
    assert switch_epoch(3.0, 10) == 3
    assert switch_epoch(3.0, 2) == 1  # Ultralytics warms up at most epochs - 1
    assert switch_epoch(0.5, 10) == 1
    assert warmup_batch("defaults_then_nbs", 64, 3.0, 10, gpus=1) == 16
    assert warmup_batch("defaults_then_nbs", 64, 3.0, 1, gpus=1) is None  # one epoch: no warm-up to follow
