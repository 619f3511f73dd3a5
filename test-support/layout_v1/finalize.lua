-- KEYS: meta, data, reqs, resp, lock; ARGV: epoch, new_location
local m = redis.call('HMGET', KEYS[1], 'migration', 'currentLocation', 'epoch')
if m[1] == 'out:' .. ARGV[1] then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'currentLocation', ARGV[2], 'epoch', ARGV[1])
  redis.call('HDEL', KEYS[1], 'migration', 'migrationSince')
  local lock = redis.call('GET', KEYS[5])
  if lock and string.sub(lock, 1, 10) == 'migration:' then redis.call('DEL', KEYS[5]) end
  return 'ok'
end
if not m[1] and m[2] == ARGV[2] and (tonumber(m[3]) or 0) >= tonumber(ARGV[1]) then return 'ok' end
return 'conflict'
