-- Argo CD health of a YoloInferenceService (yolo-operator.io/v1alpha1), read from the status the operator writes.
-- Runs in Argo CD's default Lua sandbox: base and table libraries only (no string library).
-- Serving with the rollout done: Healthy. Replicas on their way (Reconciling=True, or not Ready yet): Progressing.
-- spec.replicas 0: Suspended. Failed, Degraded, or Stalled=True (a user must act): Degraded.
-- A generation the operator has not seen yet: Progressing.
local health = { status = "Progressing", message = "waiting for the operator to observe this generation" }
local status = obj.status
if status == nil or status.observedGeneration == nil then
  return health
end
if obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation then
  return health
end

local function condition(kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local phase = status.phase or "Pending"
local ready = condition("Ready")
local reconciling = condition("Reconciling")
local stalled = condition("Stalled")
health.message = status.message or ("phase " .. phase)
if phase == "Failed" or phase == "Degraded" then
  health.status = "Degraded"
elseif stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = stalled.message or stalled.reason
elseif ready ~= nil and ready.reason == "ScaledToZero" then
  health.status = "Suspended"
elseif ready ~= nil and ready.status == "True" and not (reconciling ~= nil and reconciling.status == "True") then
  health.status = "Healthy"
end
return health
