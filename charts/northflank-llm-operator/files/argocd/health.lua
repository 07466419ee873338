-- Argo CD health check for LLMModelDeployment (northflank-llm-operator.dev/v1alpha1).
--
-- Install it as the argocd-cm key
--   resource.customizations.health.northflank-llm-operator.dev_LLMModelDeployment
-- (argocd-cm.yaml next to this file is a ready-made patch). It uses only the Lua base and table
-- libraries, so it runs in Argo CD's default sandbox (no resource.customizations.useOpenLibs needed).
--
-- The operator writes status.observedGeneration and the conditions Ready, Synced, Reconciling (only
-- while Northflank moves the deployment, or while the operator creates, updates or deletes it) and
-- Stalled (only when waiting will not help); with spec.forProvider also UpToDate (drift), and with a
-- write policy (Create, Update, Delete, *) also Managed. The first rule that matches decides:
--
--   1. no status, or status.observedGeneration behind metadata.generation
--        -> Progressing  "Waiting for the operator to observe generation N"
--      (whatever else the status says describes an older spec)
--   2. Stalled=True (crashed, 401/403/404, credentials, invalid spec, an update that does not converge)
--        -> Degraded     the Stalled message
--   2a. Managed=False (ManagementDisabled, PermissionDenied, Conflict, NotAdopted, InvalidName,
--      UpdateNotConverging, WriteFailed: the resource asks for writes the operator will not send)
--        -> Degraded     the Managed message
--   2b. Reconciling=True for Creating, Updating or Deleting (a write in progress), or
--      metadata.deletionTimestamp set (the finalizer waits for Northflank to delete it)
--        -> Progressing  the Reconciling message, or "Deleting"
--   3. Ready=Unknown (StatusStale: no successful poll for staleAfterIntervals; or a transient error
--      before the first observation)
--        -> Unknown      the Ready message: the operator cannot vouch for the deployment
--   4. Ready=True (the phase spec.expectedPhase asks for, running by default; observation current)
--        -> Healthy      the Ready message, plus the last poll error when Synced=False: a single
--                        failed poll does not flip Ready by design, so a blip stays Healthy; or the
--                        pause note when Synced=False for ReconcilePaused (the paused annotation);
--                        plus "Drifted: ..." when UpToDate=False (drift is information, not a
--                        failure: in Observe mode nothing corrects it)
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

-- Reconciling reasons of the operator's own writes (management, issue 17).
local WRITES = { Creating = true, Updating = true, Deleting = true }

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
  local managed = condition(status.conditions, "Managed")
  local upToDate = condition(status.conditions, "UpToDate")

  if stalled ~= nil and stalled.status == "True" then
    return verdict("Degraded", stalled.message)
  end
  if managed ~= nil and managed.status == "False" then
    return verdict("Degraded", managed.message)
  end
  if reconciling ~= nil and reconciling.status == "True" and WRITES[reconciling.reason] then
    return verdict("Progressing", reconciling.message)
  end
  if resource.metadata ~= nil and resource.metadata.deletionTimestamp ~= nil then
    return verdict("Progressing", "Deleting: waiting for the operator to release the resource")
  end
  local drift = ""
  if upToDate ~= nil and upToDate.status == "False" then
    drift = " Drifted: " .. tostring(upToDate.message)
  end
  if ready ~= nil and ready.status == "Unknown" then
    return verdict("Unknown", ready.message)
  end
  if ready ~= nil and ready.status == "True" then
    if synced ~= nil and synced.status == "False" and synced.reason == "ReconcilePaused" then
      return verdict("Healthy", (ready.message or "") .. " " .. tostring(synced.message) .. drift)
    end
    if synced ~= nil and synced.status == "False" then
      return verdict("Healthy", (ready.message or "") .. " Last poll failed (" .. tostring(synced.reason)
        .. "): " .. tostring(synced.message) .. drift)
    end
    return verdict("Healthy", (ready.message or "") .. drift)
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
