"""The Lua scripts: every change to shared ACD state is one script, so Redis runs it
atomically and no other node sees (or acts on) a half-made change.

Each script gets the key prefix as ARGV[1] and builds key names with the same shapes as
`queues.shared.keys.Keys`. The scripts return a status string ("ok" or the reason for
a refusal), or a table whose first element is that string.
"""

from __future__ import annotations

from queues.model import CHANNELS

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

-- Why the agent cannot take one more task of `channel` now (false = it can). One
-- HMGET reads every channel's load: an agent's total load is their sum (a separate
-- `total` counter cost two more commands per task and per slot given back).
local LOAD_FIELDS = {__LOAD_FIELDS__}
local function refuse(agent, channel)
  local f = redis.call('HMGET', akey(agent), 'presence', 'cap:' .. channel,
                       'load:' .. channel, 'voice_exclusive', unpack(LOAD_FIELDS))
  if not f[1] then return 'unknown_agent' end
  if f[1] ~= 'available' then return 'not_available' end
  local cap = tonumber(f[2]) or 0
  local load = tonumber(f[3]) or 0
  if load >= cap then return 'full' end
  if f[4] == '1' then
    local total = 0
    for i = 5, 4 + #LOAD_FIELDS do total = total + (tonumber(f[i]) or 0) end
    local voice = tonumber(f[5]) or 0
    if channel == 'voice' and total > 0 then return 'full' end
    if channel ~= 'voice' and voice > 0 then return 'full' end
  end
  return false
end

-- Every change to an agent bumps its revision: a node re-reads only the agents
-- whose revision moved since its last look (queues.cluster.sync_remote).
-- BUMPED remembers, per agent, the revision before this script's first bump and after
-- its last: the batch script returns them, so the node that made the changes need not
-- read those agents back (no other node can have changed them in between).
local BUMPED, BUMPED_ORDER = {}, {}
local function bump(agent)
  local rev = redis.call('HINCRBY', P .. 'agent-rev', agent, 1)
  local seen = BUMPED[agent]
  if seen then
    seen[2] = rev
  else
    BUMPED[agent] = {rev - 1, rev}
    table.insert(BUMPED_ORDER, agent)
  end
end

local function take_slot(agent, channel, token)
  bump(agent)
  redis.call('HSET', skey(agent), token, channel)
  redis.call('HINCRBY', akey(agent), 'load:' .. channel, 1)
end

-- Idempotent: a token that holds no slot frees nothing.
local function free_slot(agent, token)
  local channel = redis.call('HGET', skey(agent), token)
  if not channel then return false end
  bump(agent)
  redis.call('HDEL', skey(agent), token)
  redis.call('HINCRBY', akey(agent), 'load:' .. channel, -1)
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
# The voice-exclusive check counts load on every channel (queues.model.CHANNELS).
PRELUDE = PRELUDE.replace("__LOAD_FIELDS__", ", ".join(f"'load:{c}'" for c in CHANNELS))

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

# ARGV: prefix, task, node, channel, ring_all (0/1), data, and '1' when this node's
# earlier registration of the id got no reply: Redis may have run it before it died or
# the connection dropped. Then a waiting task this node owns is that registration, and
# it is taken again instead of refused as a duplicate (which left the task registered
# and held by no engine: a conversation that waited for good, found by the nemesis).
REGISTER_TASK = PRELUDE + r"""
local task, node = ARGV[2], ARGV[3]
if redis.call('EXISTS', endkey(task)) == 1 then return 'exists' end
local f = redis.call('HMGET', tkey(task), 'status', 'owner')
if f[1] and not (ARGV[7] == '1' and f[1] == 'waiting' and f[2] == node) then
  return 'exists'
end
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

# ARGV: prefix, task, offer, agent[, accepted_at]. Any node may run it (the agent's
# websocket can be on any node): the script alone decides which of several accepts
# wins. The accept time is kept beside the task's data (an adopter merges it in, see
# ADOPT), so an accept does not rewrite the whole data.
ACCEPT = PRELUDE + r"""
local task, offer, agent = ARGV[2], ARGV[3], ARGV[4]
local status = redis.call('HGET', tkey(task), 'status')
if not status then return {'unknown_task'} end
local all = redis.call('HGETALL', okey(task))
local holder
for i = 1, #all, 2 do
  if all[i] == offer then holder = all[i + 1] end
end
if not holder then return {'no_offer'} end
if holder ~= agent then return {'not_yours'} end
if status ~= 'offered' then return {status} end
local out = {'ok'}
for i = 1, #all, 2 do  -- the other (ring-all) offers are withdrawn
  if all[i] ~= offer then
    free_slot(all[i + 1], task)
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
redis.call('DEL', okey(task))
redis.call('HSET', tkey(task), 'status', 'assigned', 'agent', agent,
           'accepted_at', ARGV[5] or '')
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
# and its id kept as ended for a day (with the node that ended it), so that registering
# it again is refused cluster-wide (as the owner's engine refuses a finished id locally).
# Fenced like a claim: a node paused past its lease whose wrap-up timer fires as it
# wakes must not end (and announce the end of) a task its adopter now runs.
# The end's announcement can ride along: the task's events up to its end, added to the
# event stream in this same atomic step. A node that dies between a confirmed end and
# its publish otherwise takes the end with it, and nobody can restate it (the task's
# keys are gone: adoption finds nothing), so a ledger or a desktop waits for it forever.
# ARGV: prefix, task, node ('' = any), then optionally the stream, its MAXLEN and the
# events' JSON. Returns {'ok', withdrawn...}, {'ended', by node} (ended before),
# {'not_owner'}.
END_TASK = PRELUDE + r"""
local task, node = ARGV[2], ARGV[3] or ''
local f = redis.call('HMGET', tkey(task), 'status', 'owner', 'agent')
if not f[1] then
  local by = redis.call('GET', endkey(task))
  if by then return {'ended', by} end
  return {'unknown_task'}
end
if fenced(f[2], node) then return {'not_owner'} end
local out = {'ok'}
-- An accepted task (assigned, wrap-up) has no offers: ACCEPT deleted them, and a claim
-- needs a waiting or offered task. Only the others can have some to withdraw.
if f[1] ~= 'assigned' and f[1] ~= 'wrap_up' then
  for _, v in ipairs(withdraw_all(task, nil)) do table.insert(out, v) end
end
if f[3] and f[3] ~= '' then free_slot(f[3], task) end
redis.call('DEL', tkey(task), okey(task))
redis.call('SREM', ownkey(f[2]), task)
redis.call('SET', endkey(task), (node ~= '' and node) or '1', 'EX', ENDED_TTL_S)
if ARGV[4] and ARGV[4] ~= '' then
  for i = 6, #ARGV do
    redis.call('XADD', ARGV[4], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[i])
  end
end
return out
"""

# Take over a dead node's tasks and timers. Runs only once the node's lease is gone;
# the first live node to run it gets everything, any other finds nothing left.
# Offers that were ringing are withdrawn (the dead node's offer state is lost): those
# tasks wait again. Accepted tasks and wrap-ups keep their agent and slot.
# ARGV: prefix, dead node, adopting node.
# Returns {'ok', task, status, data, agent, accepted_at, ...} or {'alive'}.
ADOPT = PRELUDE + r"""
local dead, me = ARGV[2], ARGV[3]
if redis.call('EXISTS', nkey(dead)) == 1 then return {'alive'} end
local out = {'ok'}
for _, task in ipairs(redis.call('SMEMBERS', ownkey(dead))) do
  local f = redis.call('HMGET', tkey(task), 'status', 'data', 'agent', 'accepted_at')
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
    table.insert(out, f[3] or '')
    table.insert(out, f[4] or '')
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

# A node's lease after Redis was away (restarted, or the node cut off) for longer than
# the TTL: the key expired meanwhile. The node takes it again with its own token only if
# no other node adopted it in between (an adoption removes the node from the set of
# nodes, in the same script that moves its tasks): then everything it owns is still its
# own, and a Redis restart does not move every node's tasks around the cluster.
# KEYS[1]: lease key, KEYS[2]: set of nodes. ARGV: token, ttl_ms, node id.
# Returns 1 (renewed), 2 (revived) or 0 (lost).
REVIVE_LEASE = r"""
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder and redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
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


# ARGV: prefix, agent, agent, ... Returns per agent {presence, session, reason,
# {token, channel, ...}}: what `SharedAcdState.agent_states` returns, read in one
# script instead of a pipeline of two commands per agent (a node's sync reads every
# agent another node changed, often all of them: 400 commands for 200 agents through
# redis-py cost the node ~9.5 ms, this call ~0.7 ms).
AGENT_STATES = r"""
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local a = ARGV[i]
  local f = redis.call('HMGET', P .. 'agent:' .. a, 'presence', 'session', 'reason')
  out[i - 1] = {f[1] or '', f[2] or '', f[3] or '',
                redis.call('HGETALL', P .. 'agent:' .. a .. ':slots')}
end
return out
"""


# The ops a node's engine queues (queues.cluster), by the name `SharedAcdState.run_ops`
# takes: every one of them is also a script of its own above.
BATCHED = {
    "register": REGISTER_TASK, "claim": CLAIM_OFFER, "release": RELEASE_OFFER,
    "accept": ACCEPT, "wrap": START_WRAP_UP, "requeue": REQUEUE, "end": END_TASK,
    "update": UPDATE_TASK, "agent_state": SET_AGENT_STATE, "capacity": SET_CAPACITY,
}


def _batch_script() -> str:
    """One script that applies a list of ops in order and returns each op's reply, as
    the scripts above would have one by one, then the revisions it moved.

    Why: what one settle decided (claims, accepts, ends, ...) used to be one EVALSHA per
    op in a pipeline; each costs the node packing and parsing and, with redis-py, a
    SCRIPT EXISTS round trip per pipeline. One call per flush costs one of each. Each
    op's body is the single script's body unchanged, run as a function whose parameter
    is named ARGV (so `ARGV[2]` means the op's first argument there too); an op that
    raises is answered with "error: ..." and does not stop the ops after it.

    ARGV: prefix, then either one JSON array of ops, each [name, argument, ...] with
    every argument a string (what the node sends: one argument for redis-py to pack
    instead of ~30 per task), or per op: name, argument count, arguments. Returns
    {reply, ..., {agent, revision before, revision after, ...}}."""
    parts = [PRELUDE, "local OPS = {}\n"]
    for name, script in BATCHED.items():
        assert script.startswith(PRELUDE)
        parts.append(f"OPS['{name}'] = function(ARGV)\n{script[len(PRELUDE):]}\nend\n")
    parts.append(r"""
local out = {}
local ops = {}
if #ARGV == 2 and string.sub(ARGV[2], 1, 1) == '[' then
  for _, op in ipairs(cjson.decode(ARGV[2])) do
    local a = {P}
    for k = 2, #op do a[k] = op[k] end
    table.insert(ops, {op[1], a})
  end
else
  local i, last = 2, #ARGV
  while i <= last do
    local n = tonumber(ARGV[i + 1])
    local a = {P}
    for k = 1, n do a[k + 1] = ARGV[i + 1 + k] end
    table.insert(ops, {ARGV[i], a})
    i = i + 2 + n
  end
end
for _, op in ipairs(ops) do
  local name, a = op[1], op[2]
  local fn = OPS[name]
  local ok, reply
  if fn then
    ok, reply = pcall(fn, a)
  else
    ok, reply = false, 'unknown op ' .. tostring(name)
  end
  if not ok then
    if type(reply) == 'table' then reply = reply.err or 'error' end
    reply = 'error: ' .. tostring(reply)
  end
  table.insert(out, reply)
end
local revs = {}
for _, agent in ipairs(BUMPED_ORDER) do
  table.insert(revs, agent)
  table.insert(revs, BUMPED[agent][1])
  table.insert(revs, BUMPED[agent][2])
end
table.insert(out, revs)
return out
""")
    return "".join(parts)


BATCH = _batch_script()
