-- multiproc's Redis queue: the steps that must be atomic, as one script (docs/redis.md).
-- Call it with EVALSHA (SCRIPT LOAD gives the hash) or EVAL:
--   KEYS  1 the stream of messages   mpq:{NAME}        (entries: d = the message's bytes)
--         2 the queue's settings     mpq:{NAME}:meta   (hash: kind, format, closed)
--         3 the control stream       mpq:{NAME}:ctl    (close markers)
--         4 the join stream          mpq:{NAME}:join   (an entry each time no task is left)
--         5 (put only) the producer  mpq:{NAME}:p:PRODUCER (its last sequence number)
--   ARGV  1 the operation, then its arguments.
-- Every stream has the consumer group 'mpq'. Written without double quotes or backslashes
-- (the build embeds it in the library as it is).
local S, M, C, J = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local G = 'mpq'
local op = ARGV[1]

-- XGROUP CREATE ... MKSTREAM, keeping a group that already exists.
local function make_group(key)
  local r = redis.pcall('XGROUP', 'CREATE', key, G, '0', 'MKSTREAM')
  if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP', 1, true) then
    error(r.err)
  end
end

-- Calls cmd with the fixed arguments in head followed by ARGV[from..].
local function call_with(head, from)
  local args = {}
  for i = 1, #head do args[#args + 1] = head[i] end
  for i = from, #ARGV do args[#args + 1] = ARGV[i] end
  return redis.call(unpack(args))
end

-- init KIND: makes the groups, records the kind (queue or joinable) on first use and
-- refuses a handle of the other kind; returns the closed flag.
if op == 'init' then
  make_group(S)
  make_group(C)
  redis.call('HSETNX', M, 'kind', ARGV[2])
  redis.call('HSETNX', M, 'format', '1')
  local kind = redis.call('HGET', M, 'kind')
  if kind ~= ARGV[2] then
    return redis.error_reply('MPKIND the queue is a ' .. kind .. ' queue, not a ' .. ARGV[2] .. ' one')
  end
  return redis.call('HGET', M, 'closed') or '0'

-- put FIRST LAST TTL_MS MESSAGE...: messages FIRST..LAST of one producer, in order. A
-- message whose number the producer key has already seen is skipped, so a producer that
-- resends after a lost reply never queues a message twice. Returns how many were added.
elseif op == 'put' then
  if redis.call('HGET', M, 'closed') == '1' then
    return redis.error_reply('MPCLOSED the queue was closed')
  end
  local first, seen = tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[5]) or '-1')
  local added = 0
  for i = 5, #ARGV do
    if first + i - 5 > seen then
      redis.call('XADD', S, '*', 'd', ARGV[i])
      added = added + 1
    end
  end
  if tonumber(ARGV[3]) > seen then
    redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4])
  end
  return added

-- done ID...: task_done for messages a consumer got: acknowledged and deleted; when no
-- message is left (queued or unfinished) an entry on the join stream wakes join().
elseif op == 'done' then
  local n = call_with({'XACK', S, G}, 2)
  call_with({'XDEL', S}, 2)
  if redis.call('XLEN', S) == 0 then
    redis.call('XADD', J, 'MAXLEN', '~', '100', '*', 'z', '1')
  end
  return n

-- close: puts are refused from now on; one marker on the control stream, which every
-- getter that receives it passes on (relay), wakes the blocked getters one after another.
elseif op == 'close' then
  if redis.call('HGET', M, 'closed') ~= '1' then
    redis.call('HSET', M, 'closed', '1')
    redis.call('XADD', C, '*', 'x', '1')
  end
  return 1

-- relay ID: a getter received the close marker ID: a fresh one for the next getter.
elseif op == 'relay' then
  redis.call('XACK', C, G, ARGV[2])
  redis.call('XDEL', C, ARGV[2])
  redis.call('XADD', C, '*', 'x', '1')
  return 1

-- size: messages not yet delivered to any consumer. In a plain queue everything up to
-- the group's last delivered entry was taken: what a dead getter left is trimmed here.
elseif op == 'size' then
  local pending, last = 0, '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', S)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == G then pending, last = f['pending'], f['last-delivered-id'] end
  end
  if redis.call('HGET', M, 'kind') == 'joinable' then
    return redis.call('XLEN', S) - pending
  end
  redis.call('XTRIM', S, 'MINID', last)
  local n = redis.call('XLEN', S)
  if #redis.call('XRANGE', S, last, last) > 0 then n = n - 1 end
  return n

-- unfinished: messages queued or delivered and not yet done, and the join stream's last
-- entry id (join waits for an entry after it).
elseif op == 'unfinished' then
  local last = redis.call('XREVRANGE', J, '+', '-', 'COUNT', 1)
  return {redis.call('XLEN', S), last[1] and last[1][1] or '0-0'}

-- refresh CONSUMER MAX: the consumer's heartbeat: its pending messages (at most MAX) are
-- claimed again by itself, which resets their idle time, so XAUTOCLAIM leaves them alone.
elseif op == 'refresh' then
  local ids = {'XCLAIM', S, G, ARGV[2], '0'}
  for _, e in ipairs(redis.call('XPENDING', S, G, '-', '+', tonumber(ARGV[3]), ARGV[2])) do
    ids[#ids + 1] = e[1]
  end
  if #ids == 5 then return 0 end
  ids[#ids + 1] = 'JUSTID'
  return #redis.call(unpack(ids))

-- forget CONSUMER: a consumer that leaves with nothing pending is removed from the groups.
elseif op == 'forget' then
  if #redis.call('XPENDING', S, G, '-', '+', 1, ARGV[2]) > 0 then return 0 end
  redis.call('XGROUP', 'DELCONSUMER', S, G, ARGV[2])
  redis.call('XGROUP', 'DELCONSUMER', C, G, ARGV[2])
  return 1
end
return redis.error_reply('MPOP unknown operation ' .. tostring(op))
