-- Argo CD health of a YoloTrainJob (yolo-operator.io/v1alpha1), read from the status the operator writes.
-- Runs in Argo CD's default Lua sandbox: base and table libraries only (no string library).
-- Pending, Tuning, Training: Progressing. Succeeded: Healthy. Suspended (runPolicy.suspend): Suspended.
-- Failed, or Stalled=True (a user must act): Degraded. A generation the operator has not seen yet: Progressing.
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
local stalled = condition("Stalled")
health.message = status.message or ("phase " .. phase)
if phase == "Failed" then
  health.status = "Degraded"
elseif stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = stalled.message or stalled.reason
elseif phase == "Succeeded" then
  health.status = "Healthy"
elseif phase == "Suspended" then
  health.status = "Suspended"
end
return health
