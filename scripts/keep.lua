-- keep.lua — extends a key's lifetime to ARGV[1] seconds when it has less time left: never
-- shortens it, never gives one to a key that has none, never creates the key (EXPIRE ... GT,
-- which Redis before 7.0 lacks). Used for the meta hash of a channel a node serves.
--
-- KEYS[1] = the key
-- ARGV[1] = seconds
-- Returns the time the key had left (TTL: -2 missing, -1 no lifetime).
local t = redis.call('TTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return t
