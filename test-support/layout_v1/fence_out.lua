-- KEYS: meta, lock; ARGV: node, token, ttl_ms, now_ms
local m = redis.call('HMGET', KEYS[1], 'currentLocation', 'migration', 'epoch', 'proprietaryLocation',
  'timestampCreation', 'timestampLastAccess')
if not m[1] then return {'unknown'} end
if m[1] ~= ARGV[1] then return {'elsewhere', m[1]} end
if m[2] then return {'busy', 'migrating'} end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'busy', 'locked'} end
local next_epoch = (tonumber(m[3]) or 0) + 1
redis.call('HSET', KEYS[1], 'migration', 'out:' .. next_epoch, 'migrationSince', ARGV[4])
return {'ok', tostring(next_epoch), m[4] or ARGV[1], m[5] or '', m[6] or ''}
