-- inbox.lua — appends one rpc call to the inbox stream and keeps the stream within its bounds:
-- about ARGV[2] bytes of calls and at most ARGV[1] entries, trimming the oldest first.
--
-- KEYS[1] = cardgw:inbox        stream of rpc calls for the backend (docs/redis-schema.md)
-- KEYS[2] = cardgw:inbox:bytes  the bytes of the entries this script appended and has not
--                               trimmed: each entry counts its field names and values + 32
-- ARGV[1] = entry cap
-- ARGV[2] = byte cap ("0" = none)
-- ARGV[3..] = the entry's field, value pairs
-- Returns the new entry's id.
--
-- Room is made before the append (so an error leaves no entry behind): when the count plus the
-- new entry would pass the byte cap, or the stream is at the entry cap, the oldest entries are
-- read in batches, their sizes taken off the count, and XTRIM MINID removes them, down to 90 % of
-- the byte cap (99 % of the entry cap) so that a full inbox trims once per many appends, not at
-- each. The count covers stream entries only (a consumer group's pending list is the backend's to
-- keep small: XACK, XAUTOCLAIM). A backend that deletes entries itself leaves the count high:
-- trims then come early, never late; an emptied stream resets it.
local maxlen, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local size = 32
for i = 3, #ARGV do
  size = size + #ARGV[i]
end
local len = redis.call("XLEN", KEYS[1])
local used = 0
if len > 0 then
  used = tonumber(redis.call("GET", KEYS[2]) or "0")
end
if (cap > 0 and used + size > cap) or len >= maxlen then
  local bytes_goal = cap > 0 and math.floor(cap * 0.9) - size or nil
  local len_goal = maxlen - math.max(1, math.floor(maxlen / 100))
  local function over()
    return len > 0 and ((bytes_goal ~= nil and used > bytes_goal) or len > len_goal)
  end
  while over() do
    local rows = redis.call("XRANGE", KEYS[1], "-", "+", "COUNT", 500)
    local last
    for _, row in ipairs(rows) do
      if not over() then
        break
      end
      local s = 32
      for _, v in ipairs(row[2]) do
        s = s + #v
      end
      used = used - s
      len = len - 1
      last = row[1]
    end
    if not last then
      break
    end
    local ms, seq = string.match(last, "^(%d+)-(%d+)$")
    redis.call("XTRIM", KEYS[1], "MINID", ms .. "-" .. (tonumber(seq) + 1))
    len = redis.call("XLEN", KEYS[1])
    if len == 0 or used < 0 then
      used = 0
    end
  end
end
local id = redis.call("XADD", KEYS[1], "*", unpack(ARGV, 3))
redis.call("SET", KEYS[2], used + size)
return id
