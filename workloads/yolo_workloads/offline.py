"""Make Ultralytics run without any network access.

Out of the box Ultralytics reaches the network in several places: an online probe and analytics (`sync`), hub and
tracker integrations, `pip install` of missing requirements, a font download for plots (Arial.ttf), and the AMP
self-check, which downloads a pretrained model to compare FP32 and mixed-precision outputs. Our pods have no
egress, so each of those would hang or fail. `prepare_environment()` sets the environment before Ultralytics is
imported; `apply()` imports it and patches what an environment variable cannot reach. Both are idempotent, and the
training and serving verbs call `apply()` first. Fonts: rather than turning plots off, we register a local font
(matplotlib's DejaVu Sans) under the names Ultralytics looks for, so plots still render.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_applied = False

# Settings keys that enable network-using integrations or the analytics probe.
_OFF_SETTINGS = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def prepare_environment() -> None:
    """Environment Ultralytics reads at import time; inherited by dataloader workers and DDP ranks."""
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() returns False without a DNS probe
    os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install a missing requirement at run time
    if "YOLO_CONFIG_DIR" not in os.environ:
        home = Path(os.environ.get("HOME", "/nonexistent"))
        if not os.access(home, os.W_OK):  # read-only root filesystems in pods
            os.environ["YOLO_CONFIG_DIR"] = str(Path(tempfile.gettempdir()) / "Ultralytics")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _install_fonts(config_dir: Path) -> None:
    """Put a local TTF where `check_font` looks first, so it never downloads Arial."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    config_dir.mkdir(parents=True, exist_ok=True)
    for name in _FONT_NAMES:
        target = config_dir / name
        if not target.exists() and source.exists():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)  # atomic: concurrent ranks never see half a font


def offline_check_amp(model: Any) -> bool:
    """Offline stand-in for Ultralytics' AMP self-check.

    The original compares a downloaded pretrained model's detections in FP32 and under autocast. We compare the
    model being trained instead (an eval-mode copy, so BatchNorm statistics are untouched) on a fixed input: AMP
    is kept when the mixed-precision output is finite and close to FP32.
    """
    import copy

    import torch

    try:
        device = next(model.parameters()).device
    except StopIteration:
        return False
    if device.type != "cuda":
        return False  # Ultralytics uses AMP on accelerators only
    try:
        probe = copy.deepcopy(model).eval().float()
        generator = torch.Generator(device="cpu").manual_seed(0)
        x = torch.rand(4, 3, 256, 256, generator=generator).to(device)
        with torch.no_grad():
            ref = probe(x)
            ref = ref[0] if isinstance(ref, (tuple, list)) else ref
            with torch.autocast("cuda", enabled=True):
                amp = probe(x)
                amp = amp[0] if isinstance(amp, (tuple, list)) else amp
        amp = amp.float()
        scale = float(ref.abs().max()) + 1e-6
        ok = bool(torch.isfinite(amp).all()) and float((ref - amp).abs().max()) <= 0.05 * scale + 0.5
        del probe
        return ok
    except Exception:  # an AMP failure must disable AMP, never crash training
        return False


def apply() -> None:
    """Set the environment, import Ultralytics and switch off everything that would reach the network."""
    global _applied
    prepare_environment()
    if _applied:
        return
    import ultralytics.engine.trainer as trainer_module
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, checks

    wanted = {key: False for key in _OFF_SETTINGS if key in SETTINGS and SETTINGS[key] is not False}
    if wanted:
        try:
            SETTINGS.update(wanted)  # type: ignore[no-untyped-call]  # Ultralytics leaves it unannotated
        except Exception:  # a read-only settings file: the in-memory dict still governs this process
            dict.update(SETTINGS, wanted)
    _install_fonts(Path(USER_CONFIG_DIR))
    checks.check_amp = offline_check_amp
    setattr(trainer_module, "check_amp", offline_check_amp)  # noqa: B010 (not re-exported); the trainer imported the name directly
    _applied = True
