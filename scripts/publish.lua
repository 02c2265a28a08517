-- publish.lua — the one publish path of cardgw: assigns the channel's next offset atomically,
-- keeps bounded history and the epoch, and PUBLISHes the frame every node relays.
--
-- KEYS[1] = cardgw:{<channel>}:m   meta hash: e = epoch, s = top offset
-- KEYS[2] = cardgw:{<channel>}:x   history stream, entry ID = <offset>-0
-- KEYS[3] = cardgw:{<channel>}     pub/sub channel the nodes subscribe to
-- ARGV[1] = data (a msgpack value when ARGV[2] is "m", JSON text when "j")
-- ARGV[2] = "m" or "j"
-- ARGV[3] = publisher uid ("" when the backend publishes)
-- ARGV[4] = history size (publications kept; 0 = none)
-- ARGV[5] = history lifetime in seconds
-- ARGV[6] = meta lifetime in seconds (longer than the history; 0 = never expires)
-- Returns { offset, epoch }.
--
-- The epoch is made here from the server clock when the meta hash is missing (first publish,
-- expired, evicted or lost): offsets then restart at 1 and clients see a new epoch.
local fmt = ARGV[2]
if fmt ~= "m" and fmt ~= "j" then
  return redis.error_reply("ERR cardgw: format must be m or j")
end
local epoch = redis.call("HGET", KEYS[1], "e")
if not epoch then
  local t = redis.call("TIME")
  epoch = string.format("%x%05x", tonumber(t[1]), tonumber(t[2]))
  redis.call("HSET", KEYS[1], "e", epoch)
end
local off = redis.call("HINCRBY", KEYS[1], "s", 1)
local size = tonumber(ARGV[4])
if off == 1 then
  redis.call("DEL", KEYS[2])
end
if size > 0 then
  redis.call("XADD", KEYS[2], "MAXLEN", size, off .. "-0", "d", ARGV[1], "f", fmt, "u", ARGV[3])
  redis.call("EXPIRE", KEYS[2], tonumber(ARGV[5]))
end
local meta_ttl = tonumber(ARGV[6])
if meta_ttl > 0 then
  redis.call("EXPIRE", KEYS[1], meta_ttl)
end
-- frame: version, epoch, offset, format, publisher, then the data (all but data are one line)
redis.call("PUBLISH", KEYS[3], "1\n" .. epoch .. "\n" .. off .. "\n" .. fmt .. "\n" .. ARGV[3] .. "\n" .. ARGV[1])
return { off, epoch }
