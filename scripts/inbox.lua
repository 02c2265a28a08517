-- inbox.lua — appends one rpc call to the inbox stream and keeps the stream within its bounds:
-- at most ARGV[1] entries (MAXLEN ~) and about ARGV[2] bytes of Redis memory.
--
-- KEYS[1] = cardgw:inbox   stream of rpc calls for the backend (docs/redis-schema.md)
-- ARGV[1] = entry cap (MAXLEN ~)
-- ARGV[2] = byte cap: after the append, when MEMORY USAGE (sampled: cost independent of the
--           stream's length) says the stream takes more, the oldest entries are trimmed to 90 %
--           of it, in proportion to the average entry; "0" = no byte cap
-- ARGV[3..] = the entry's field, value pairs
-- Returns the new entry's id. Redis trims streams only by count or id; the byte cap is enforced
-- here, after the fact, so a stream may pass it by one entry between two calls.
local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", unpack(ARGV, 3))
local cap = tonumber(ARGV[2])
if cap > 0 then
  local used = redis.call("MEMORY", "USAGE", KEYS[1], "SAMPLES", "5")
  if used and used > cap then
    local n = redis.call("XLEN", KEYS[1])
    local keep = math.floor(n * (cap * 0.9) / used)
    if keep < 1 then
      keep = 1
    end
    redis.call("XTRIM", KEYS[1], "MAXLEN", keep)
  end
end
return id
