-- Argo CD health check for LLMModelDeployment (northflank-llm-operator.dev/v1alpha1).
--
-- Install it as the argocd-cm key
--   resource.customizations.health.northflank-llm-operator.dev_LLMModelDeployment
-- (argocd-cm.yaml next to this file is a ready-made patch). It uses only the Lua base and table
-- libraries, so it runs in Argo CD's default sandbox (no resource.customizations.useOpenLibs needed).
--
-- The operator writes status.observedGeneration and the conditions Ready, Synced, Reconciling (only
-- while Northflank moves the deployment) and Stalled (only when waiting will not help). The first
-- rule that matches decides:
--
--   1. no status, or status.observedGeneration behind metadata.generation
--        -> Progressing  "Waiting for the operator to observe generation N"
--      (whatever else the status says describes an older spec)
--   2. Stalled=True (crashed, 401/403/404, credentials, invalid spec)
--        -> Degraded     the Stalled message
--   3. Ready=Unknown (StatusStale: no successful poll for staleAfterIntervals; or a transient error
--      before the first observation)
--        -> Unknown      the Ready message: the operator cannot vouch for the deployment
--   4. Ready=True (the phase spec.expectedPhase asks for, running by default; observation current)
--        -> Healthy      the Ready message, plus the last poll error when Synced=False: a single
--                        failed poll does not flip Ready by design, so a blip stays Healthy; or the
--                        pause note when Synced=False for ReconcilePaused (the paused annotation)
--   5. Ready=False for UnexpectedPhase (running while spec.expectedPhase is paused)
--        -> Degraded     the Ready message: nothing will pause it without someone acting
--   6. status.phase paused (while running is expected)
--        -> Suspended    the Ready message
--   7. Reconciling=True (pending, provisioning, starting, deleting)
--        -> Progressing  the Reconciling message
--   8. anything else (Ready=False for a Northflank status this operator version does not know, or no
--      Ready condition at all)
--        -> Unknown      the Ready message, or "Waiting for the operator to report Ready"

local function condition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function verdict(status, message)
  local hs = {}
  hs.status = status
  hs.message = message or ""
  return hs
end

local function health(resource)
  local generation = nil
  if resource.metadata ~= nil then
    generation = resource.metadata.generation
  end
  local status = resource.status
  if status == nil or status.observedGeneration == nil
      or (generation ~= nil and status.observedGeneration < generation) then
    if generation == nil then
      return verdict("Progressing", "Waiting for the operator to observe the resource")
    end
    return verdict("Progressing", "Waiting for the operator to observe generation " .. tostring(generation))
  end

  local ready = condition(status.conditions, "Ready")
  local synced = condition(status.conditions, "Synced")
  local reconciling = condition(status.conditions, "Reconciling")
  local stalled = condition(status.conditions, "Stalled")

  if stalled ~= nil and stalled.status == "True" then
    return verdict("Degraded", stalled.message)
  end
  if ready ~= nil and ready.status == "Unknown" then
    return verdict("Unknown", ready.message)
  end
  if ready ~= nil and ready.status == "True" then
    if synced ~= nil and synced.status == "False" and synced.reason == "ReconcilePaused" then
      return verdict("Healthy", (ready.message or "") .. " " .. tostring(synced.message))
    end
    if synced ~= nil and synced.status == "False" then
      return verdict("Healthy", (ready.message or "") .. " Last poll failed (" .. tostring(synced.reason)
        .. "): " .. tostring(synced.message))
    end
    return verdict("Healthy", ready.message)
  end
  if ready ~= nil and ready.status == "False" and ready.reason == "UnexpectedPhase" then
    return verdict("Degraded", ready.message)
  end
  if status.phase == "paused" then
    if ready ~= nil and ready.message ~= nil then
      return verdict("Suspended", ready.message)
    end
    return verdict("Suspended", "Northflank reports the deployment as paused.")
  end
  if reconciling ~= nil and reconciling.status == "True" then
    return verdict("Progressing", reconciling.message)
  end
  if ready ~= nil then
    return verdict("Unknown", ready.message)
  end
  return verdict("Unknown", "Waiting for the operator to report Ready")
end

return health(obj)
