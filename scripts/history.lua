-- history.lua — reads a channel's position and retained publications in one atomic call: used to
-- join a channel at an exact position, recover after a reconnect, fill relay gaps, serve history.
--
-- KEYS[1] = cardgw:{<channel>}:m   meta hash: e = epoch, s = top offset, g = Redis history
-- KEYS[2] = cardgw:{<channel>}:x   history stream, entry ID = <offset>-0
-- ARGV[1] = mode: "p" position only, "a" publications after ARGV[2], "t" the newest ARGV[3]
-- ARGV[2] = offset (mode a: entries with a greater offset)
-- ARGV[3] = most entries returned
-- ARGV[4] = meta lifetime in seconds, applied when the epoch is created here
-- Returns { epoch, top, entries }; entries as XRANGE gives them, oldest first.
--
-- The epoch is created here when the meta hash is missing, so every position a client gets is
-- concrete; scripts/publish.lua keeps it and counts offsets from there.
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  local t = redis.call('TIME')
  e = string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
  local g = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '?'
  g = string.sub(g, 1, 16) -- scripts/publish.lua compares it
  redis.call('HSET', KEYS[1], 'e', e, 's', 0, 'g', g)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
local s = redis.call('HGET', KEYS[1], 's') or '0'
local r = {}
if ARGV[1] == 'a' then
  r = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2] .. '-0', '+', 'COUNT', ARGV[3])
elseif ARGV[1] == 't' then
  local rev = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[3])
  for i = #rev, 1, -1 do r[#r + 1] = rev[i] end
end
return {e, s, r}
