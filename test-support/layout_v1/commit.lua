-- KEYS: meta, lock, data, reqs, resp
-- ARGV: token, node, request_id, now_iso, now_ms, retention_ms, max_ids, retain, retained,
--       then (op, field, value) triples: op 's' sets field to value, 'd' deletes field
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
-- Moved away or fenced by a migration while the call ran: write nothing,
-- but free the lock, which is still this call's.
if redis.call('HGET', KEYS[1], 'currentLocation') ~= ARGV[2]
   or redis.call('HEXISTS', KEYS[1], 'migration') == 1 then
  redis.call('DEL', KEYS[2])
  return 0
end
local i = 10
while i <= #ARGV do
  if ARGV[i] == 's' then
    redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[3], ARGV[i + 1])
  end
  i = i + 3
end
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
if ARGV[8] == '1' then redis.call('HSET', KEYS[5], ARGV[3], ARGV[9]) end
local function forget(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  end
end
forget(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[6])), 'LIMIT', 0, 128))
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[7])
if excess > 0 then forget(redis.call('ZRANGE', KEYS[4], 0, excess - 1)) end
redis.call('HSET', KEYS[1], 'timestampLastAccess', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('DEL', KEYS[2])
return 1
