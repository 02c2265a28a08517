-- history.lua — reads a channel's position and retained publications in one atomic call: used to
-- join a channel at an exact position, recover after a reconnect, fill relay gaps, serve history.
--
-- KEYS[1] = cardgw:{<channel>}:m   meta hash: e = epoch, s = top offset, g = Redis history
-- KEYS[2] = cardgw:{<channel>}:x   history stream, entry ID = <offset>-0
-- ARGV[1] = mode: "p" position only, "a" publications after ARGV[2], "t" the newest ARGV[3]
-- ARGV[2] = offset (mode a: entries with a greater offset)
-- ARGV[3] = most entries returned
-- ARGV[4] = meta lifetime in seconds when this read creates the epoch; a meta hash with a shorter
--           time left is extended to it (a publish's longer lifetime, or none, is never cut; the
--           same as EXPIRE GT, which Redis before 7.0 lacks)
-- ARGV[5] = byte budget of the entries returned (data + publisher, as the node counts them);
--           "0" or absent: none. Entries are read a few at a time and reading stops at the first
--           entry that would pass it (the first entry is returned even when it alone does)
-- Returns { epoch, top, entries, cut }; entries as XRANGE gives them, oldest first; cut is 1 when
-- the budget stopped the read before `count` entries or the end of the stream, else 0.
--
-- The epoch is created here when the meta hash is missing, so every position a client gets is
-- concrete; scripts/publish.lua keeps it and counts offsets from there.
local ttl = tonumber(ARGV[4])
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  local t = redis.call('TIME')
  e = string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
  local g = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '?'
  g = string.sub(g, 1, 16) -- scripts/publish.lua compares it
  redis.call('HSET', KEYS[1], 'e', e, 's', 0, 'g', g)
  redis.call('EXPIRE', KEYS[1], ttl)
else
  local left = redis.call('TTL', KEYS[1])
  if left >= 0 and left < ttl then
    redis.call('EXPIRE', KEYS[1], ttl)
  end
end
local s = redis.call('HGET', KEYS[1], 's') or '0'
local mode, count, max = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[5] or '0') or 0
local r, cut = {}, 0
if mode == 'a' or mode == 't' then
  local from, bytes, step = mode == 'a' and ('(' .. ARGV[2] .. '-0') or '+', 0, 1
  while #r < count do
    local n = math.min(step, count - #r)
    local rows
    if mode == 'a' then
      rows = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', n)
    else
      rows = redis.call('XREVRANGE', KEYS[2], from, '-', 'COUNT', n)
    end
    for _, row in ipairs(rows) do
      local f, size = row[2], 0
      for i = 1, #f - 1, 2 do
        if f[i] == 'd' or f[i] == 'u' then size = size + #f[i + 1] end
      end
      if max > 0 and #r > 0 and bytes + size > max then
        cut = 1
        break
      end
      r[#r + 1] = row
      bytes = bytes + size
    end
    if cut == 1 or #rows < n then break end
    from = '(' .. rows[#rows][1]
    -- the next read: about as many entries as the budget has room for (1 to 64)
    step = 64
    if max > 0 and bytes > 0 then
      step = math.max(1, math.min(64, math.floor((max - bytes) / (bytes / #r)) + 1))
    end
  end
  if mode == 't' then
    local n = #r
    for i = 1, math.floor(n / 2) do r[i], r[n + 1 - i] = r[n + 1 - i], r[i] end
  end
end
return {e, s, r, cut}
