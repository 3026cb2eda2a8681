-- Argo CD health check for connect.cloud-operators.dev/SecurityProfile (connect-operator).
-- Lua 5.1 (gopher-lua). Install it with argocd-cm.yaml; the mapping is documented in deploy/README.md.
local hs = {}

-- Synced=False reasons that mean "the spec must change": the operator does not retry them.
local terminal = {
  ValidationFailed = true,
  InvalidObject = true,
  ProfileOwnedElsewhere = true,
  InvalidParameterException = true,
  InvalidRequestException = true,
  DuplicateResourceException = true,
}

-- Synced=False reasons from the InstanceBindings (admin-owned grants): nothing changes until the spec
-- or a binding does, so a person must act.
local refused = {
  NoInstanceBinding = true,
  AmbiguousInstanceBinding = true,
  RegionNotBound = true,
  AdoptionNotAllowed = true,
  PermissionNotAllowed = true,
  DefaultProfileNotAllowed = true,
}

-- Synced=False reasons the operator keeps retrying but that need a person to act (raise a quota,
-- fix IAM or the operator's configuration). Degraded, so a sync wave does not wait on them silently;
-- the resource turns Healthy by itself once the cause is fixed.
local needs_attention = {
  LimitExceededException = true,
  ServiceQuotaExceededException = true,
  AccessDeniedException = true,
  RegionNotConfigured = true,
  InstanceNotFound = true,
}

local function find_condition(conditions, condition_type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == condition_type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.reason ~= nil and c.reason ~= "" then
    if c.message ~= nil and c.message ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.reason
  end
  return c.message or ""
end

local metadata = obj.metadata or {}
local status = obj.status
local generation = metadata.generation
local synced = nil
local ready = nil
if status ~= nil then
  synced = find_condition(status.conditions, "Synced")
  ready = find_condition(status.conditions, "Ready")
end

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if synced ~= nil and synced.status == "False" then
    hs.message = "Deleting: " .. describe(synced)
  else
    hs.message = "Deleting: waiting for the operator to clean up the Connect security profile"
  end
  return hs
end

if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for the operator to observe the resource"
  end
  return hs
end

if synced ~= nil and synced.status == "False" then
  if terminal[synced.reason] or refused[synced.reason] or needs_attention[synced.reason] then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(synced)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
