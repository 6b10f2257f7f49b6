-- Argo CD health check for airy.co/v1alpha1 Channel.
--
-- Reads the status the channel-operator writes (kstatus conditions):
--   Ready        True once the desired state holds (reason Connected or Disconnected)
--   Reconciling  True while a change is in progress or retried after a transient failure
--   Stalled      True for failures that retrying cannot fix
-- An absent Reconciling or Stalled condition counts as False.
--
--   Suspended    the airy.co/paused: "true" annotation stops reconciling
--   Progressing  not yet reconciled at the current generation, or Reconciling=True
--   Degraded     Stalled=True, or Ready=False with nothing retrying
--   Healthy      Ready=True at the current generation

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return (c.reason or c.type) .. ": " .. c.message
  end
  return c.reason or c.type
end

local function health(status, message)
  return { status = status, message = message }
end

local meta = obj.metadata or {}
local annotations = meta.annotations or {}
if annotations["airy.co/paused"] == "true" then
  return health("Suspended", "Reconciling is paused by the airy.co/paused annotation")
end

local status = obj.status or {}
local generation = meta.generation or 0
local conditions = status.conditions or {}
local ready = condition(conditions, "Ready")
if status.observedGeneration == nil or status.observedGeneration < generation or ready == nil
  or (ready.observedGeneration ~= nil and ready.observedGeneration < generation) then
  return health("Progressing", "Waiting for the controller to reconcile generation " .. generation)
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return health("Degraded", describe(stalled))
end
if ready.status == "True" then
  return health("Healthy", describe(ready))
end
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return health("Progressing", describe(reconciling))
end
-- Ready=False and nobody retrying: the last attempt failed (a half-done disconnect, reason
-- Progressing, is still on its way).
if ready.status == "False" and ready.reason ~= "Progressing" then
  return health("Degraded", describe(ready))
end
return health("Progressing", describe(ready))
