"""PURE: (spec, observed children, now) → next phase, conditions and actions. Shared by the controller and the
local runner."""
