-- publish.lua — the one publish path of cardgw: assigns the channel's next offset atomically,
-- keeps bounded history and the epoch, and PUBLISHes the frame every node relays.
--
-- KEYS[1] = cardgw:{<channel>}:m   meta hash: e = epoch, s = top offset, g = Redis history
-- KEYS[2] = cardgw:{<channel>}:x   history stream, entry ID = <offset>-0
-- KEYS[3] = cardgw:{<channel>}     pub/sub channel the nodes subscribe to
-- KEYS[4] = cardgw:offline          (optional) stream for publications nobody was subscribed to
-- ARGV[1] = data (a msgpack value when ARGV[2] is "m", JSON text when "j")
-- ARGV[2] = "m" or "j"
-- ARGV[3] = publisher uid ("" when the backend publishes)
-- ARGV[4] = history size (publications kept; 0 = none)
-- ARGV[5] = history lifetime in seconds
-- ARGV[6] = meta lifetime in seconds (longer than the history; 0 = never expires)
-- ARGV[7] = "1" when a restarted Redis keeps every acknowledged write (appendfsync always), else
--           "0" or absent (redis_restart_keeps_writes in config.example)
-- ARGV[8] = offline stream cap: when no node is subscribed to KEYS[3] (PUBLISH reached nobody),
--           the publication is also appended to KEYS[4], MAXLEN ~ this; "0" or absent = off
-- ARGV[9] = "1": the frame carries this Redis's clock at the publication (frame version 2, for
--           the nodes' delivery-latency histogram); "0" or absent: version 1 (relay_timestamps)
-- Returns { offset, epoch }.
--
-- The epoch is made here from the server clock when the meta hash is missing (first publish,
-- expired, evicted or lost): offsets then restart at 1 and clients see a new epoch. It is made
-- anew, too, when this Redis is not the history the channel was last published on (g = the
-- master_replid then): a promoted replica or a restarted master may lack acknowledged writes, and
-- counting on from its top would give their offsets to other publications under the same epoch.
local fmt = ARGV[2]
if fmt ~= "m" and fmt ~= "j" then
  return redis.error_reply("ERR cardgw: format must be m or j")
end
local info = redis.call("INFO", "replication")
local gen = string.match(info, "master_replid:(%x+)")
if not gen then
  return redis.error_reply("ERR cardgw: INFO replication gave no master_replid")
end
gen = string.sub(gen, 1, 16)
local m = redis.call("HMGET", KEYS[1], "e", "g")
local epoch = m[1]
if epoch and m[2] and m[2] ~= gen then
  -- a restart that keeps every write (replid2 all zeros: restarted, not promoted) keeps the epoch
  local promoted = not string.find(info, "master_replid2:0+%s")
  if ARGV[7] ~= "1" or promoted then
    epoch = false
  end
end
if not epoch then
  local t = redis.call("TIME")
  epoch = string.format("%x%05x", tonumber(t[1]), tonumber(t[2]))
  redis.call("HSET", KEYS[1], "e", epoch, "s", 0, "g", gen)
elseif m[2] ~= gen then
  redis.call("HSET", KEYS[1], "g", gen)
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
else
  redis.call("PERSIST", KEYS[1]) -- 0 = never expires, also for a hash a read created short-lived
end
-- frame: version, [publish time in us,] epoch, offset, format, publisher, then the data (all but
-- data are one line)
local head = "1\n"
if ARGV[9] == "1" then
  local t = redis.call("TIME")
  head = "2\n" .. t[1] .. string.format("%06d", tonumber(t[2])) .. "\n"
end
local heard = redis.call("PUBLISH", KEYS[3], head .. epoch .. "\n" .. off .. "\n" .. fmt .. "\n" .. ARGV[3] .. "\n" .. ARGV[1])
local cap = tonumber(ARGV[8] or "0") or 0
if heard == 0 and cap > 0 and KEYS[4] then
  redis.call("XADD", KEYS[4], "MAXLEN", "~", cap, "*", "ch", string.sub(KEYS[3], 9, -2),
    "e", epoch, "o", off, "f", fmt, "u", ARGV[3], "d", ARGV[1])
end
return { off, epoch }
