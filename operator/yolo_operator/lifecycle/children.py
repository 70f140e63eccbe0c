"""Which rendered children need a write: (desired manifest, the child as last observed) → why to apply it, or None.

Pure. Why (issue 24): a YoloInferenceService's reconcile used to server-side apply every child (ConfigMap,
Deployment, Service, PDB) again every reconcile period, a write per child per period that almost always changed
nothing; at 300 services it was most of the operator's API writes. Now each child carries, in the annotation
`yolo-operator.io/applied-hash`, a hash of the manifest the operator applied (`stamp`), and a child is applied again
only when `drift` finds a reason in the watch-fed copy of it:

- it is absent, or being deleted;
- it is not controlled by this owner (another uid: the resource was recreated under the same name);
- its applied-hash differs: the spec (or the operator's rendering) changed, including fields the new manifest no
  longer sets, which only a new apply removes;
- it no longer holds what the manifest sets: a label, annotation or field was edited or removed by hand (`contains`).

What the API server adds (defaults, status, other managers' fields) is not drift. Quantities compare by value
(`500m` = `0.5`), and an empty map or list the server drops counts as present. A difference this module cannot
explain (a form the server normalises that it does not know) only costs the write it used to make every period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from yolo_operator.quantity import parse_quantity
from yolo_operator.render.common import canonical_json

APPLIED_HASH_ANNOTATION = "yolo-operator.io/applied-hash"
QUANTITY_MAPS = frozenset({"requests", "limits"})
"""Keys whose values are maps of resource quantities."""
QUANTITY_KEYS = frozenset({"sizeLimit"})
"""Keys whose value is a quantity."""


def manifest_hash(obj: Mapping[str, Any]) -> str:
    """A hash of the manifest without its own applied-hash annotation (so stamping twice gives the same hash)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != APPLIED_HASH_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return hashlib.sha256(canonical_json({**obj, "metadata": meta}).encode()).hexdigest()[:32]


def stamp(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with its applied-hash annotation (a copy; `obj` is left as it was)."""
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH_ANNOTATION: manifest_hash(obj)}
    return {**obj, "metadata": meta}


def applied_hash(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
    return str(value) if value is not None else None


def drift(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> str | None:
    """Why the stamped manifest `desired` must be applied over `observed` (the child as the watch last saw it;
    None when absent), or None when applying it would change nothing."""
    if observed is None:
        return "absent"
    want, have = desired.get("metadata") or {}, observed.get("metadata") or {}
    if have.get("deletionTimestamp"):
        return "being deleted"
    owners = have.get("ownerReferences") or []
    for ref in want.get("ownerReferences") or []:
        if not any(o.get("uid") == ref.get("uid") and bool(o.get("controller")) for o in owners):
            return f"not controlled by {ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"
    expected = applied_hash(desired)
    if expected is None or applied_hash(observed) != expected:
        return "changed"
    for field in ("labels", "annotations"):
        if not contains(have.get(field), want.get(field)):
            return f"metadata.{field} edited"
    for key, value in desired.items():
        if key not in ("apiVersion", "kind", "metadata", "status") and not contains(observed.get(key), value, key):
            return f"{key} edited"
    return None


def contains(have: Any, want: Any, key: str = "") -> bool:
    """Does `have` hold everything `want` sets? Maps: every key of `want`, recursively (extra keys are fine);
    lists: the same length, element by element; scalars: equal (quantities by value under `key`s that hold them).
    A `want` of None, {} or [] is satisfied by an absent value (the server omits empty fields)."""
    if want is None or (isinstance(want, Mapping | list) and not want and have is None):
        return True
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return False
        if key in QUANTITY_MAPS:
            return all(_same_quantity(have.get(k), v) for k, v in want.items())
        return all(contains(have.get(k), v, k) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, Sequence) or isinstance(have, str) or len(have) != len(want):
            return False
        return all(contains(h, w, key) for h, w in zip(have, want, strict=True))
    if key in QUANTITY_KEYS:
        return _same_quantity(have, want)
    return bool(have == want and type(have) is type(want))


def _same_quantity(have: Any, want: Any) -> bool:
    if have == want:
        return True
    if have is None or isinstance(have, bool) or isinstance(want, bool):
        return False
    try:
        return parse_quantity(have) == parse_quantity(want)
    except ValueError:
        return False
