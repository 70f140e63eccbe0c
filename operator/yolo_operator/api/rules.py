"""Cross-field rules written once and enforced twice: as CEL by the API server, and in Python by the models.

The API server cannot run Python and the local runner has no API server, so every rule carries both forms and
the same message. A test evaluates each rule's examples against both (see tests/cluster/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """One `x-kubernetes-validations` entry and its Python twin.

    `check` is None for transition rules (those using `oldSelf`): only the API server sees the old object.
    `field` names the offending field relative to the object the rule sits on (the CRD's `fieldPath`).
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None = None
    field: str | None = None

    def as_validation(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.field:
            out["fieldPath"] = "." + self.field
        return out


def exactly_one(*names: str) -> Callable[[Any], bool]:
    """True when exactly one of the named attributes is set."""

    def check(obj: Any) -> bool:
        return sum(getattr(obj, n) is not None for n in names) == 1

    return check


def exactly_one_cel(*json_names: str) -> str:
    terms = " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in json_names)
    return f"{terms} == 1"


def immutable(field: str) -> Rule:
    """A transition rule: the field may not change once the object exists."""
    return Rule(
        cel="self == oldSelf",
        message=f"{field} is immutable: delete and re-create the resource to change it",
    )
