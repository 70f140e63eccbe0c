"""The code of an Ultralytics method this package replays step by step, as a hash to check it against.

Why: a replacement that takes the same steps as an Ultralytics method with one step done another way (the assigner's
`_forward` in train/pair_normalize.py) must stand in only for the code it was written against. Another Ultralytics
whose method differs (in anything but its docstring, comments and blank lines) keeps its own.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from typing import Any


def code_lines(function: Any) -> str:
    """The function's source after its docstring, without comments and blank lines, each line stripped."""
    source = inspect.getsource(function)
    body = source.split('"""', 2)[-1] if source.count('"""') >= 2 else source
    lines = (line.split("#", 1)[0].strip() for line in body.splitlines())
    return "\n".join(line for line in lines if line)


@functools.cache
def same_code(function: Any, sha256: str) -> bool:
    """Whether `function`'s code lines hash to `sha256` (read once a function: the checks run on the loss's path)."""
    return hashlib.sha256(code_lines(function).encode()).hexdigest() == sha256
