-- KEYS: meta, lock, reqs, resp
-- ARGV: node, token, ttl_ms, request_id, now_iso
local current = redis.call('HGET', KEYS[1], 'currentLocation')
if not current then
  redis.call('HSET', KEYS[1], 'proprietaryLocation', ARGV[1], 'currentLocation', ARGV[1],
    'timestampCreation', ARGV[5], 'timestampLastAccess', ARGV[5], 'epoch', 0, 'version', 0)
  current = ARGV[1]
end
-- A migration in progress fences the session even after its lock expired
-- (checked first: during a migration both ends point at each other).
if redis.call('HEXISTS', KEYS[1], 'migration') == 1 then
  return {'locked', 1000, 'migration:fence'}
end
if current ~= ARGV[1] then
  return {'moved', current}
end
if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  local kept = redis.call('HGET', KEYS[4], ARGV[4])
  if kept then return {'completed', kept} end
  return {'completed'}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'acquired', redis.call('HGET', KEYS[1], 'proprietaryLocation')}
end
return {'locked', redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[2]) or ''}
