"""The controller's start-up does not pay for the dev environment's client-side validation (issue 24)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import sys
from yolo_operator import cli
cli.skip_client_side_validation()
import yolo_operator.main  # Kopf, the kubernetes client and every handler
slow = sorted(m for m in ("kubernetes_validate", "jsonschema", "rfc3987_syntax", "lark") if sys.modules.get(m))
print(",".join(slow) or "none")
"""


def test_the_controller_imports_without_kubernetes_validate_or_its_grammar() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "none"


def test_tests_can_still_import_kubernetes_validate() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import kubernetes_validate; print(kubernetes_validate.latest_version())"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert out.stdout.strip()
