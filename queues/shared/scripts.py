"""The Lua scripts: every change to shared ACD state is one script, so Redis runs it
atomically and no other node sees (or acts on) a half-made change.

Each script gets the key prefix as ARGV[1] and builds key names with the same shapes as
`queues.shared.keys.Keys`. The scripts return a status string ("ok" or the reason for
a refusal), or a table whose first element is that string.
"""

from __future__ import annotations

PRELUDE = r"""
local P = ARGV[1]
local function akey(a) return P .. 'agent:' .. a end
local function skey(a) return P .. 'agent:' .. a .. ':slots' end
local function tkey(t) return P .. 'task:' .. t end
local function okey(t) return P .. 'task:' .. t .. ':offers' end
local function nkey(n) return P .. 'node:' .. n end
local function ownkey(n) return P .. 'owned:' .. n end
local function tmkey(n) return P .. 'timers:' .. n end
local function endkey(t) return P .. 'ended:' .. t end
-- How long an ended task's id stays taken (a day): a message re-processed late by a
-- node that was paused past its inbox claim cannot bring its conversation back.
local ENDED_TTL_S = 86400

-- Why the agent cannot take one more task of `channel` now (false = it can).
local function refuse(agent, channel)
  local f = redis.call('HMGET', akey(agent), 'presence', 'cap:' .. channel,
                       'load:' .. channel, 'voice_exclusive', 'total', 'load:voice')
  if not f[1] then return 'unknown_agent' end
  if f[1] ~= 'available' then return 'not_available' end
  local cap = tonumber(f[2]) or 0
  local load = tonumber(f[3]) or 0
  if load >= cap then return 'full' end
  if f[4] == '1' then
    local total = tonumber(f[5]) or 0
    local voice = tonumber(f[6]) or 0
    if channel == 'voice' and total > 0 then return 'full' end
    if channel ~= 'voice' and voice > 0 then return 'full' end
  end
  return false
end

-- Every change to an agent bumps its revision: a node re-reads only the agents
-- whose revision moved since its last look (queues.cluster.sync_remote).
local function bump(agent)
  redis.call('HINCRBY', P .. 'agent-rev', agent, 1)
end

local function take_slot(agent, channel, token)
  bump(agent)
  redis.call('HSET', skey(agent), token, channel)
  redis.call('HINCRBY', akey(agent), 'load:' .. channel, 1)
  redis.call('HINCRBY', akey(agent), 'total', 1)
end

-- Idempotent: a token that holds no slot frees nothing.
local function free_slot(agent, token)
  local channel = redis.call('HGET', skey(agent), token)
  if not channel then return false end
  bump(agent)
  redis.call('HDEL', skey(agent), token)
  redis.call('HINCRBY', akey(agent), 'load:' .. channel, -1)
  redis.call('HINCRBY', akey(agent), 'total', -1)
  return channel
end

-- Withdraw every open offer of a task; returns {offer, agent, offer, agent, ...}.
local function withdraw_all(task, except)
  local out = {}
  local all = redis.call('HGETALL', okey(task))
  for i = 1, #all, 2 do
    if all[i] ~= except then
      free_slot(all[i + 1], task)
      redis.call('HDEL', okey(task), all[i])
      table.insert(out, all[i])
      table.insert(out, all[i + 1])
    end
  end
  return out
end

-- Fencing: a routing change on a task must come from its owner (when one is named).
local function fenced(task_owner, node)
  return node ~= '' and task_owner ~= node
end
"""

# ARGV: prefix, agent, presence, voice_exclusive (0/1), then channel, capacity pairs.
SET_AGENT = PRELUDE + r"""
local agent = ARGV[2]
local fields = {'presence', ARGV[3], 'voice_exclusive', ARGV[4]}
for i = 5, #ARGV, 2 do
  table.insert(fields, 'cap:' .. ARGV[i])
  table.insert(fields, ARGV[i + 1])
end
redis.call('HSET', akey(agent), unpack(fields))
bump(agent)
return 'ok'
"""

# ARGV: prefix, agent, presence. Held slots stay; only new reservations are refused.
SET_PRESENCE = PRELUDE + r"""
if redis.call('EXISTS', akey(ARGV[2])) == 0 then return 'unknown_agent' end
redis.call('HSET', akey(ARGV[2]), 'presence', ARGV[3])
bump(ARGV[2])
return 'ok'
"""

# Log-in, atomically cluster-wide: two nodes logging the same agent in at the same
# instant from different sessions cannot both win. The same session may log in again
# (a desktop reconnecting through another node). ARGV: prefix, agent, session.
LOG_IN = PRELUDE + r"""
local f = redis.call('HMGET', akey(ARGV[2]), 'presence', 'session')
if not f[1] then return 'unknown_agent' end
if f[1] ~= 'logged_out' and f[2] and f[2] ~= '' and f[2] ~= ARGV[3] then
  return 'elsewhere'
end
redis.call('HSET', akey(ARGV[2]), 'presence', 'available', 'session', ARGV[3],
           'reason', '')
bump(ARGV[2])
return 'ok'
"""

# ARGV: prefix, agent, channel, token.
RESERVE_AGENT = PRELUDE + r"""
local agent, channel, token = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', skey(agent), token) == 1 then return 'ok' end
local why = refuse(agent, channel)
if why then return why end
take_slot(agent, channel, token)
return 'ok'
"""

# ARGV: prefix, agent, token.
RELEASE_AGENT = PRELUDE + r"""
if free_slot(ARGV[2], ARGV[3]) then return 'ok' end
return 'no_slot'
"""

# ARGV: prefix, task, node, channel, ring_all (0/1), data.
REGISTER_TASK = PRELUDE + r"""
local task, node = ARGV[2], ARGV[3]
if redis.call('EXISTS', tkey(task), endkey(task)) > 0 then return 'exists' end
redis.call('HSET', tkey(task), 'status', 'waiting', 'owner', node, 'channel', ARGV[4],
           'ring_all', ARGV[5], 'agent', '', 'data', ARGV[6])
redis.call('SADD', ownkey(node), task)
return 'ok'
"""

# ARGV: prefix, task, agent, offer, node ('' = no fencing).
CLAIM_OFFER = PRELUDE + r"""
local task, agent, offer, node = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = redis.call('HMGET', tkey(task), 'status', 'owner', 'channel', 'ring_all')
if not f[1] then return 'unknown_task' end
if fenced(f[2], node) then return 'not_owner' end
if f[1] == 'offered' then
  if f[4] ~= '1' then return 'offered' end
  if redis.call('HEXISTS', skey(agent), task) == 1 then return 'offered' end
elseif f[1] ~= 'waiting' then
  return f[1]
end
local why = refuse(agent, f[3])
if why then return why end
take_slot(agent, f[3], task)
redis.call('HSET', okey(task), offer, agent)
redis.call('HSET', tkey(task), 'status', 'offered')
return 'ok'
"""

# Reject, RONA or withdrawal of one offer. ARGV: prefix, task, offer, node.
RELEASE_OFFER = PRELUDE + r"""
local task, offer, node = ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', tkey(task), 'status', 'owner')
if not f[1] then return 'unknown_task' end
if fenced(f[2], node) then return 'not_owner' end
local agent = redis.call('HGET', okey(task), offer)
if not agent then return 'no_offer' end
redis.call('HDEL', okey(task), offer)
free_slot(agent, task)
if f[1] == 'offered' and redis.call('HLEN', okey(task)) == 0 then
  redis.call('HSET', tkey(task), 'status', 'waiting')
end
return 'ok'
"""

# ARGV: prefix, task, offer, agent. Any node may run it (the agent's websocket can be
# on any node): the script alone decides which of several accepts wins.
ACCEPT = PRELUDE + r"""
local task, offer, agent = ARGV[2], ARGV[3], ARGV[4]
local status = redis.call('HGET', tkey(task), 'status')
if not status then return {'unknown_task'} end
local holder = redis.call('HGET', okey(task), offer)
if not holder then return {'no_offer'} end
if holder ~= agent then return {'not_yours'} end
if status ~= 'offered' then return {status} end
local withdrawn = withdraw_all(task, offer)
redis.call('DEL', okey(task))
redis.call('HSET', tkey(task), 'status', 'assigned', 'agent', agent)
local out = {'ok'}
for _, v in ipairs(withdrawn) do table.insert(out, v) end
return out
"""

# What an adopter needs to rebuild a task (queue, times, agent, wrap-up end) changes as
# the task moves on; the owner rewrites it, with whether its queue now rings all
# agents at once. A task that ended is not brought back.
# ARGV: prefix, task, channel, data, ring_all (0/1).
UPDATE_TASK = PRELUDE + r"""
if redis.call('EXISTS', tkey(ARGV[2])) == 0 then return 'unknown_task' end
redis.call('HSET', tkey(ARGV[2]), 'channel', ARGV[3], 'data', ARGV[4], 'ring_all', ARGV[5])
return 'ok'
"""

# A config reload: new capacities (and voice exclusivity); presence and held slots stay.
# ARGV: prefix, agent, voice_exclusive (0/1), then channel, capacity pairs.
SET_CAPACITY = PRELUDE + r"""
local fields = {'voice_exclusive', ARGV[3]}
for i = 4, #ARGV, 2 do
  table.insert(fields, 'cap:' .. ARGV[i])
  table.insert(fields, ARGV[i + 1])
end
redis.call('HSET', akey(ARGV[2]), unpack(fields))
if redis.call('HEXISTS', akey(ARGV[2]), 'presence') == 0 then
  redis.call('HSET', akey(ARGV[2]), 'presence', 'logged_out')
end
bump(ARGV[2])
return 'ok'
"""

# An agent's presence as the engines see it, with the log-in session and the
# not-ready reason, so that every node applies the same. ARGV: prefix, agent,
# presence, session, reason.
SET_AGENT_STATE = PRELUDE + r"""
if redis.call('EXISTS', akey(ARGV[2])) == 0 then return 'unknown_agent' end
redis.call('HSET', akey(ARGV[2]), 'presence', ARGV[3], 'session', ARGV[4],
           'reason', ARGV[5])
bump(ARGV[2])
return 'ok'
"""

# ARGV: prefix, task, agent. The slot stays taken during wrap-up.
START_WRAP_UP = PRELUDE + r"""
local f = redis.call('HMGET', tkey(ARGV[2]), 'status', 'agent')
if not f[1] then return 'unknown_task' end
if f[1] ~= 'assigned' or f[2] ~= ARGV[3] then return 'not_assigned' end
redis.call('HSET', tkey(ARGV[2]), 'status', 'wrap_up')
return 'ok'
"""

# Back to waiting (transfer, move, callback): every slot the task holds is freed.
# ARGV: prefix, task, node.
REQUEUE = PRELUDE + r"""
local task, node = ARGV[2], ARGV[3]
local f = redis.call('HMGET', tkey(task), 'status', 'owner', 'agent')
if not f[1] then return {'unknown_task'} end
if fenced(f[2], node) then return {'not_owner'} end
local out = {'ok'}
for _, v in ipairs(withdraw_all(task, nil)) do table.insert(out, v) end
if f[3] and f[3] ~= '' then free_slot(f[3], task) end
redis.call('HSET', tkey(task), 'status', 'waiting', 'agent', '')
return out
"""

# The task leaves the ACD (wrap-up over, abandoned, exited): slots freed, keys gone,
# and its id kept as ended for a day, so that registering it again is refused
# cluster-wide (as the owner's engine refuses a finished id locally). Fenced like a
# claim: a node paused past its lease whose wrap-up timer fires as it wakes must not end
# (and announce the end of) a task its adopter now runs. ARGV: prefix, task, node ('' =
# any). Returns {'ok', withdrawn...}, {'ended'} (ended before), {'not_owner'}.
END_TASK = PRELUDE + r"""
local task, node = ARGV[2], ARGV[3] or ''
local f = redis.call('HMGET', tkey(task), 'status', 'owner', 'agent')
if not f[1] then
  if redis.call('EXISTS', endkey(task)) == 1 then return {'ended'} end
  return {'unknown_task'}
end
if fenced(f[2], node) then return {'not_owner'} end
local out = {'ok'}
for _, v in ipairs(withdraw_all(task, nil)) do table.insert(out, v) end
if f[3] and f[3] ~= '' then free_slot(f[3], task) end
redis.call('DEL', tkey(task), okey(task))
redis.call('SREM', ownkey(f[2]), task)
redis.call('SET', endkey(task), '1', 'EX', ENDED_TTL_S)
return out
"""

# Take over a dead node's tasks and timers. Runs only once the node's lease is gone;
# the first live node to run it gets everything, any other finds nothing left.
# Offers that were ringing are withdrawn (the dead node's offer state is lost): those
# tasks wait again. Accepted tasks and wrap-ups keep their agent and slot.
# ARGV: prefix, dead node, adopting node.
# Returns {'ok', task, status, data, ...} or {'alive'}.
ADOPT = PRELUDE + r"""
local dead, me = ARGV[2], ARGV[3]
if redis.call('EXISTS', nkey(dead)) == 1 then return {'alive'} end
local out = {'ok'}
for _, task in ipairs(redis.call('SMEMBERS', ownkey(dead))) do
  local f = redis.call('HMGET', tkey(task), 'status', 'data')
  if f[1] then
    if f[1] == 'offered' then
      withdraw_all(task, nil)
      f[1] = 'waiting'
    end
    redis.call('HSET', tkey(task), 'owner', me, 'status', f[1])
    redis.call('SADD', ownkey(me), task)
    table.insert(out, task)
    table.insert(out, f[1])
    table.insert(out, f[2])
  end
end
-- dead == me: a restarted node recovering what its previous life owned.
if dead ~= me then
  if redis.call('EXISTS', tmkey(dead)) == 1 then
    redis.call('ZUNIONSTORE', tmkey(me), 2, tmkey(me), tmkey(dead), 'AGGREGATE', 'MIN')
  end
  redis.call('DEL', ownkey(dead), tmkey(dead), P .. 'inbox:' .. dead)
  redis.call('SREM', P .. 'nodes', dead)
end
return out
"""

# Due timers of a node, removed as they are returned: each fires once. Fenced by the
# node's lease token, so a node that lost its lease (and so its timers) fires nothing.
# ARGV: prefix, node, token, now_ms, limit. Returns {'ok', member, due, ...}.
POP_DUE_TIMERS = PRELUDE + r"""
local node, token = ARGV[2], ARGV[3]
if redis.call('GET', nkey(node)) ~= token then return {'not_owner'} end
local due = redis.call('ZRANGEBYSCORE', tmkey(node), '-inf', ARGV[4], 'WITHSCORES',
                       'LIMIT', 0, tonumber(ARGV[5]))
local out = {'ok'}
for i = 1, #due, 2 do
  redis.call('ZREM', tmkey(node), due[i])
  table.insert(out, due[i])
  table.insert(out, due[i + 1])
end
return out
"""

# Leases: renew and release only by the holder (compare-and-set on the token).
# KEYS[1]: lease key. ARGV: token, ttl_ms.
RENEW_LEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]: lease key. ARGV: token.
RELEASE_LEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
