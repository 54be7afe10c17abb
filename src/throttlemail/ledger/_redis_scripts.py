"""The Lua scripts of the Redis ledger: each one state transition or one consistent read.

Every script starts with a comment naming its KEYS and ARGV. Recipients live in one sorted
set whose score is ``BAND_WIDTH * band + import sequence``, where band is the state's
position in :class:`~throttlemail.RecipientState` (pending 0 ... skipped 5).
"""

BAND_WIDTH = 2**44
"""Score distance between two state bands, and so the number of import positions."""

# Shared by the scripts below. Redis converts a number passed to redis.call() with every
# digit, but Lua's tostring() and '..' keep only 14, so score bounds are formatted
# explicitly. LIMIT keeps each ZADD or HSET within Lua's unpack() limit of about 8,000
# values.
_LUA_PRELUDE = f"local BAND = {BAND_WIDTH}" + """
local PENDING, SCHEDULED, SENDING, SENT, FAILED, SKIPPED = 0, 1, 2, 3, 4, 5
local LIMIT = 1000
local function band_start(band)
    return string.format('%.0f', band * BAND)
end
local function split(score)
    local band = math.floor(score / BAND)
    return band, score - band * BAND
end
"""

CLAIM = """
-- Move up to ARGV[1] pending recipients, oldest first, to scheduled under a new claim id.
-- KEYS[1] recipients zset, KEYS[2] claims hash, KEYS[3] meta hash
-- ARGV[1] limit
-- Returns {claim id, recipient id, ...}.
""" + _LUA_PRELUDE + """
local claim_id = redis.call('HINCRBY', KEYS[3], 'last-claim-id', 1)
local found = redis.call('ZRANGEBYSCORE', KEYS[1], 0, '(' .. band_start(SCHEDULED),
                         'LIMIT', 0, ARGV[1], 'WITHSCORES')
local result = {claim_id}
local claim = tostring(claim_id)
local shift = (SCHEDULED - PENDING) * BAND
-- Two reused buffers filled up to n, so that no per-id table grows or is allocated.
local rescored, claims, n = {}, {}, 0
for i = 1, #found, 2 do
    local id = found[i]
    result[#result + 1] = id
    rescored[n + 1], rescored[n + 2] = tonumber(found[i + 1]) + shift, id
    claims[n + 1], claims[n + 2] = id, claim
    n = n + 2
    if n == 2 * LIMIT or i + 1 == #found then
        redis.call('ZADD', KEYS[1], 'XX', unpack(rescored, 1, n))
        redis.call('HSET', KEYS[2], unpack(claims, 1, n))
        n = 0
    end
end
return result
"""

RELEASE = """
-- Put each recipient still scheduled under the given claim back to pending.
-- KEYS[1] recipients zset, KEYS[2] claims hash
-- ARGV recipient id, claim id, recipient id, claim id, ...
-- Returns how many moved.
""" + _LUA_PRELUDE + """
local moved = 0
for i = 1, #ARGV, 2 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score then
        local band, sequence = split(tonumber(score))
        if band == SCHEDULED and redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
            redis.call('ZADD', KEYS[1], 'XX', PENDING * BAND + sequence, ARGV[i])
            moved = moved + 1
        end
    end
end
return moved
"""

BEGIN_DELIVERY = """
-- Move a recipient from scheduled to sending if the campaign is running and the claim is
-- current; when the campaign is paused or cancelled, move it back to pending instead.
-- KEYS[1] recipients zset, KEYS[2] claims hash, KEYS[3] meta hash
-- ARGV[1] recipient id, ARGV[2] claim id, or '' to accept any claim
-- Returns 'started', 'held', 'stale' or 'unknown'.
""" + _LUA_PRELUDE + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 'unknown' end
local band, sequence = split(tonumber(score))
if band ~= SCHEDULED then return 'stale' end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 'stale' end
local state = redis.call('HGET', KEYS[3], 'state')
if state and state ~= 'running' then
    redis.call('ZADD', KEYS[1], 'XX', PENDING * BAND + sequence, ARGV[1])
    return 'held'
end
redis.call('ZADD', KEYS[1], 'XX', SENDING * BAND + sequence, ARGV[1])
return 'started'
"""

FINISH_DELIVERY = """
-- Move a recipient from sending to the outcome's state if the claim is current.
-- KEYS[1] recipients zset, KEYS[2] claims hash, KEYS[3] errors hash
-- ARGV[1] recipient id, ARGV[2] claim id or '' to accept any claim, ARGV[3] target band,
-- ARGV[4] 'set' to store ARGV[5] as the error, 'clear' to delete it, 'keep' to leave it
-- Returns 1 if the recipient moved, else 0.
""" + _LUA_PRELUDE + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local band, sequence = split(tonumber(score))
if band ~= SENDING then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[3]) * BAND + sequence, ARGV[1])
if ARGV[4] == 'set' then
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
elseif ARGV[4] == 'clear' then
    redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
"""

RETRY_FAILED = """
-- Move up to ARGV[1] failed recipients back to pending, oldest first.
-- KEYS[1] recipients zset
-- ARGV[1] maximum to move in this call
-- Returns how many moved.
""" + _LUA_PRELUDE + """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], band_start(FAILED),
                         '(' .. band_start(FAILED + 1), 'LIMIT', 0, ARGV[1], 'WITHSCORES')
local shift = (FAILED - PENDING) * BAND
local rescored, n = {}, 0
for i = 1, #found, 2 do
    rescored[n + 1], rescored[n + 2] = tonumber(found[i + 1]) - shift, found[i]
    n = n + 2
    if n == 2 * LIMIT or i + 1 == #found then
        redis.call('ZADD', KEYS[1], 'XX', unpack(rescored, 1, n))
        n = 0
    end
end
return #found / 2
"""

SUPPRESS = """
-- Move the given pending recipients to skipped.
-- KEYS[1] recipients zset
-- ARGV recipient ids
-- Returns how many moved.
""" + _LUA_PRELUDE + """
local moved = 0
for i = 1, #ARGV do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score then
        local band, sequence = split(tonumber(score))
        if band == PENDING then
            redis.call('ZADD', KEYS[1], 'XX', SKIPPED * BAND + sequence, ARGV[i])
            moved = moved + 1
        end
    end
end
return moved
"""

COUNTS = """
-- Count the recipients in each state, from the score ranges alone.
-- KEYS[1] recipients zset
-- ARGV none
-- Returns six counts, in band order.
""" + _LUA_PRELUDE + """
local counts = {}
for band = PENDING, SKIPPED do
    local low, high = band_start(band), '(' .. band_start(band + 1)
    counts[#counts + 1] = redis.call('ZCOUNT', KEYS[1], low, high)
end
return counts
"""

LOOKUP = """
-- Read one recipient's score, claim id and error at one moment.
-- KEYS[1] recipients zset, KEYS[2] claims hash, KEYS[3] errors hash
-- ARGV[1] recipient id
-- Returns {score, claim id, error}, with false where absent.
""" + _LUA_PRELUDE + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return {} end
return {score, redis.call('HGET', KEYS[2], ARGV[1]), redis.call('HGET', KEYS[3], ARGV[1])}
"""

CHANGE_CAMPAIGN_STATE = """
-- Set the campaign's control state, unless it is cancelled, which is final.
-- KEYS[1] meta hash
-- ARGV[1] new state
-- Returns the previous state.
""" + _LUA_PRELUDE + """
local previous = redis.call('HGET', KEYS[1], 'state') or 'running'
if previous ~= 'cancelled' then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
end
return previous
"""

RESERVE_PACE = """
-- Reserve ARGV[1] seconds of pace starting at the cursor or ARGV[2], whichever is later.
-- KEYS[1] meta hash
-- ARGV[1] span in seconds, ARGV[2] now in seconds since the epoch
-- Returns the start, as a string with every digit of the double.
""" + _LUA_PRELUDE + """
local cursor = tonumber(redis.call('HGET', KEYS[1], 'pace-cursor') or '0')
local start = math.max(cursor, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'pace-cursor', string.format('%.17g', start + tonumber(ARGV[1])))
return string.format('%.17g', start)
"""

RETURN_PACE = """
-- Move the pace cursor back to ARGV[2] if it is still ARGV[1], the end of a reservation
-- whose batch stopped early.
-- KEYS[1] meta hash
-- ARGV[1] reserved end, ARGV[2] new cursor, both in seconds since the epoch
-- Returns 1 if the cursor moved, else 0.
""" + _LUA_PRELUDE + """
local cursor = tonumber(redis.call('HGET', KEYS[1], 'pace-cursor') or '0')
if cursor ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'pace-cursor', ARGV[2])
return 1
"""
