"""Test modules are imported by their file name (rootdir-relative, no packages), so two with one basename in
different folders break collection of the whole run ("import file mismatch"). Caught here, by name, in seconds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    repeated = {
        name: sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob(name)) for name, n in names.items() if n > 1
    }
    assert not repeated, f"rename one of each: {repeated}"
