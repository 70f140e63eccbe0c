"""Cross-field rules written once and enforced twice: as CEL by the API server, and in Python by the models.

The API server cannot run Python and the local runner has no API server, so every rule carries both forms and
the same message. A test evaluates each rule's examples against both (see tests/cluster/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel
from yolo_workloads.contract import DEFAULT_TASK, TASK_SUFFIXES


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
    message_expression: str | None = None
    """CEL building the message from the object (the API server shows it instead of `message`)."""
    explain: Callable[[Any], str] | None = None
    """The Python twin of `message_expression`: the same words for the same object."""

    def as_validation(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field:
            out["fieldPath"] = "." + self.field
        return out


def task_cel(name: str) -> str:
    """CEL for the task of the model file named by the string expression `name`, decided as
    contract.task_in_name decides it (the same suffixes, detect without one)."""
    expr = f"'{DEFAULT_TASK}'"
    for suffix, task in reversed(TASK_SUFFIXES.items()):
        expr = f"{name}.contains('{suffix}') ? '{task}' : {expr}"
    return f"({expr})"


def exactly_one(*names: str) -> Rule:
    """Exactly one of the named optional fields (Python names) is set: a union the schema cannot express."""
    wire = [to_camel(n) for n in names]
    terms = " + ".join(f"(has(self.{n}) ? 1 : 0)" for n in wire)
    return Rule(
        cel=f"{terms} == 1",
        message=f"set exactly one of {' or '.join(wire)}",
        check=lambda obj: sum(getattr(obj, n) is not None for n in names) == 1,
    )


def immutable(*fields: str, kind: str) -> tuple[Rule, ...]:
    """Transition rules: each named field (wire name) may not change, appear or vanish once the object exists."""
    return tuple(
        Rule(
            cel=f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
            message=f"spec.{f} is immutable: create a new {kind}",
        )
        for f in fields
    )
