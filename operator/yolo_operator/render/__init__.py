"""PURE: spec (+ tuning result) → the Kubernetes objects the operator wants to exist, as plain dicts."""
