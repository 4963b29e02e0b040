-- Argo CD health check for FTPServer (ftp.kubeftp.dev/v1alpha1).
-- Install as resource.customizations.health.ftp.kubeftp.dev_FTPServer in argocd-cm
-- (docs/install.md). It reads the kstatus conditions the operator writes, the same ones Flux
-- and kstatus read: Ready (always present), Reconciling and Stalled (present only while True).
local hs = {status = "Progressing", message = "Waiting for the ftp-operator to report status"}
if obj.status == nil then
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Waiting for the ftp-operator to observe generation " .. tostring(generation)
  return hs
end

local ready, reconciling, stalled
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation then
      if c.type == "Ready" then
        ready = c
      elseif c.type == "Reconciling" then
        reconciling = c
      elseif c.type == "Stalled" then
        stalled = c
      end
    end
  end
end

local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

-- Stalled: the operator cannot progress without a person (a missing Secret, a port clash).
if stalled ~= nil and stalled.status == "True" then
  return {status = "Degraded", message = describe(stalled)}
end
-- Reconciling: still converging (waiting for the load balancer's address, rolling out pods).
if reconciling ~= nil and reconciling.status == "True" then
  return {status = "Progressing", message = describe(reconciling)}
end
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end
-- Stopped on purpose (spec.replicas: 0): Argo CD's state for a workload scaled to nothing.
if ready.status == "True" and ready.reason == "Stopped" then
  return {status = "Suspended", message = ready.message or ""}
end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message or ""}
end
-- Ready False without Reconciling or Stalled (the operator always sets one of them): not
-- healthy yet, as kstatus reads it too.
hs.message = describe(ready)
return hs
