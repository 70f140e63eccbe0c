"""A measurement in a fresh Python process: the benchmarks that time a process's start-up (imports, set-up) run
their code as a child and read the figures it prints as JSON on its last line."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_child(code: str, *args: str) -> dict[str, Any]:
    """`python -c code args...` to completion (failing loudly), and the JSON object on its last line of stdout."""
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures
