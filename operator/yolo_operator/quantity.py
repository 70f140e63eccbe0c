"""Kubernetes resource quantities (`8`, `500m`, `32Gi`) as numbers: shared by the pure layers (render, lifecycle),
which may not import each other."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")


def parse_quantity(value: float | str) -> Decimal:
    """A Kubernetes quantity (`8`, `500m`, `32Gi`, `1e3`) as a number; ValueError naming the value otherwise."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    try:
        if match and match.group(2):
            return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2)])
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 8, 500m or 32Gi") from None
