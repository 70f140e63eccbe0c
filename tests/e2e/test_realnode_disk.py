"""The real node refuses to load an image the disk cannot hold with the kubelet's eviction floor still free, and
says so (tests/e2e/realnode.py `disk_short_for`): otherwise the kubelet, below its floor, deletes every image no pod
runs, the pause image too, and the next pod waits minutes on a sandbox it cannot create (seen on 2026-12-05 with
two caches on one disk)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from realnode import CACHE, EVICTION_FLOOR, disk_short_for

pytestmark = pytest.mark.e2e

GIB = 2**30


def usage(total_gib: float, free_gib: float) -> SimpleNamespace:
    """What `shutil.disk_usage` answers, in the fields the check reads."""
    return SimpleNamespace(total=int(total_gib * GIB), free=int(free_gib * GIB))


def test_an_image_that_fits_with_the_floor_to_spare_loads() -> None:
    assert disk_short_for(6 * GIB, usage(250, 68)) is None


@pytest.mark.parametrize("free_gib", [14.0, 3.0])
def test_an_image_that_would_pass_the_floor_is_refused_with_the_numbers(free_gib: float) -> None:
    why = disk_short_for(6 * GIB, usage(250, free_gib))
    assert why is not None
    assert f"{free_gib:.1f} GiB free" in why and str(CACHE) in why
    assert f"{(12 + 250 * EVICTION_FLOOR + 1):.1f} GiB needed" in why
    assert "YOLO_OPERATOR_CACHE" in why
