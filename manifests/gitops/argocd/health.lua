-- Argo CD health of a vigil.dev/ModelDeployment, from the status the Vigil operator writes.
-- Same source as the resource.customizations.health.vigil.dev_ModelDeployment key of
-- argocd-cm.yaml; tests/unit/test_argocd_health.py runs it against real status objects.
--   Healthy      the version in git is promoted and serving (Ready=True)
--   Progressing  not observed yet, rolling out, or analysing
--   Degraded     Stalled=True: a person must act (rolled back: git names a version that
--                failed; Degraded: no metrics, nothing to revert to, restored release failed
--                too, Deployment refused), or an invalid spec. Degraded and RolledBack are
--                read too, for a status that an operator older than Stalled wrote.
local hs = {}

local function find(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function text(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback or ""
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Vigil operator to observe the ModelDeployment"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Vigil operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions
local ready = find(conditions, "Ready")
local degraded = find(conditions, "Degraded")
local rolled_back = find(conditions, "RolledBack")
local progressing = find(conditions, "Progressing")
local stalled = find(conditions, "Stalled")

if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. text(stalled, status.message)
  return hs
end
if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = (degraded.reason or "Degraded") .. ": " .. text(degraded, status.message)
  return hs
end
if is_true(rolled_back) then
  hs.status = "Degraded"
  hs.message = (rolled_back.reason or "RolledBack") .. ": " .. text(ready, text(rolled_back, status.message))
  return hs
end
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = text(ready, status.message)
  return hs
end
if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "InvalidSpec: " .. text(ready, status.message)
  return hs
end
hs.status = "Progressing"
hs.message = text(ready, text(progressing, status.message or "Waiting for the rollout"))
return hs
