"""The Redis ledger: one campaign shared by every process and host that reaches the server."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import redis
from redis.commands.core import Script
from redis.exceptions import RedisError, ResponseError

from .._states import CampaignState, Claim, Counts, DeliveryStart, RecipientState
from ..errors import LedgerError, MissingDependencyError
from .base import RecipientRecord, check_claim_limit

logger = logging.getLogger(__name__)

RedisClient: TypeAlias = Any
"""A ``redis.Redis`` or ``redis.cluster.RedisCluster`` client.

Typed loosely because redis-py's own annotations and the separate ``types-redis`` stubs
disagree on whether ``Redis`` is generic, and the module must check cleanly under either.
"""

_T = TypeVar("_T")

# A recipient's score is BAND_WIDTH * band + sequence, where band is its state's position
# below and sequence its import position. Scores stay below 6 * 2**44 < 2**53, so the
# doubles that Redis stores them in are exact, and each state is one contiguous score range.
BAND_WIDTH = 2**44
_BANDS = {state: band for band, state in enumerate(RecipientState)}
_STATES_BY_BAND = dict(enumerate(RecipientState))

# Ids per ZADD command when importing: large enough that per-command overhead vanishes,
# small enough that one command never blocks the server for long.
_ADD_CHUNK = 5_000
# Ids per script call for release and suppress, and the most recipients that one
# retry_failed call moves, for the same reason.
_SCRIPT_CHUNK = 5_000
_EXPORT_CHUNK = 10_000

# Shared by the scripts below. Redis converts a number passed to redis.call() with every
# digit, but Lua's tostring() and '..' keep only 14, so score bounds are formatted
# explicitly. LIMIT keeps each ZADD or HSET within Lua's unpack() limit of about 8,000
# values.
_LUA_PRELUDE = """
local BAND = 17592186044416
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

_CLAIM = """
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

_RELEASE = """
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

_BEGIN_DELIVERY = """
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

_FINISH_DELIVERY = """
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

_RETRY_FAILED = """
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

_SUPPRESS = """
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

_COUNTS = """
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

_LOOKUP = """
-- Read one recipient's score, claim id and error at one moment.
-- KEYS[1] recipients zset, KEYS[2] claims hash, KEYS[3] errors hash
-- ARGV[1] recipient id
-- Returns {score, claim id, error}, with false where absent.
""" + _LUA_PRELUDE + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return {} end
return {score, redis.call('HGET', KEYS[2], ARGV[1]), redis.call('HGET', KEYS[3], ARGV[1])}
"""

_CHANGE_CAMPAIGN_STATE = """
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

_RESERVE_PACE = """
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


class RedisLedger:
    """A :class:`~throttlemail.RecipientLedger` in Redis, for campaigns that many processes
    and hosts share.

    Pass the client the application already has (``redis.Redis`` or
    ``redis.cluster.RedisCluster``, with or without ``decode_responses``). Every state
    transition is one Lua script, so it is atomic against any number of batchers and
    workers. The scripts take the time as an argument and never call ``TIME``.

    Keys, all sharing the hash tag ``{<campaign>}`` so that each script's keys sit in one
    Redis Cluster slot::

        <prefix>:{<campaign>}:recipients  sorted set: member = recipient id,
                                          score = 2**44 * state band + import sequence
        <prefix>:{<campaign>}:claims      hash: recipient id -> latest claim id
        <prefix>:{<campaign>}:errors      hash: recipient id -> error of the last failed send
        <prefix>:{<campaign>}:meta        hash: state, pace-cursor, last-claim-id, sequence

    The state bands are pending 0, scheduled 1, sending 2, sent 3, failed 4, skipped 5, so
    each state is one score range: counts are six ``ZCOUNT`` calls and claiming is a
    ``ZRANGEBYSCORE`` over the pending range, both in import order. A recipient that was
    never claimed costs only its sorted-set entry. Claiming adds a ``claims`` field that
    stays, so that :meth:`lookup` can name the latest claim of a sent recipient. ``meta``'s
    ``sequence`` counts the import positions handed out so far.
    """

    def __init__(
        self, client: RedisClient, campaign: str, *, key_prefix: str = "throttlemail"
    ) -> None:
        if not campaign or "{" in campaign or "}" in campaign:
            raise ValueError(
                f"invalid campaign name {campaign!r} for a Redis ledger: it must be non-empty "
                "and contain no '{' or '}', which would break the Redis Cluster hash tag"
            )
        _check_lua_support(client)

        self._client = client
        self._campaign = campaign
        tag = f"{key_prefix}:{{{campaign}}}"
        self._recipients_key = f"{tag}:recipients"
        self._claims_key = f"{tag}:claims"
        self._errors_key = f"{tag}:errors"
        self._meta_key = f"{tag}:meta"

        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._begin_delivery = client.register_script(_BEGIN_DELIVERY)
        self._finish_delivery = client.register_script(_FINISH_DELIVERY)
        self._retry_failed = client.register_script(_RETRY_FAILED)
        self._suppress = client.register_script(_SUPPRESS)
        self._counts = client.register_script(_COUNTS)
        self._lookup = client.register_script(_LOOKUP)
        self._change_campaign_state = client.register_script(_CHANGE_CAMPAIGN_STATE)
        self._reserve_pace = client.register_script(_RESERVE_PACE)

    def __repr__(self) -> str:
        return f"RedisLedger(campaign={self._campaign!r}, key={self._recipients_key!r})"

    @property
    def campaign(self) -> str:
        return self._campaign

    @property
    def client(self) -> RedisClient:
        """The Redis client this ledger uses."""
        return self._client

    # -- recipients ---------------------------------------------------------------------

    def add(self, recipient_ids: Sequence[str], *, now: float) -> int:
        if not recipient_ids:
            return 0
        first = self._reserve_sequences(len(recipient_ids))

        def write() -> int:
            pipe = self._client.pipeline(transaction=False)
            for offset in range(0, len(recipient_ids), _ADD_CHUNK):
                chunk = recipient_ids[offset : offset + _ADD_CHUNK]
                start = first + offset
                pipe.zadd(
                    self._recipients_key,
                    {rid: start + i for i, rid in enumerate(chunk)},
                    nx=True,
                )
            return sum(int(added) for added in pipe.execute())

        return self._call(write)

    def claim(self, limit: int, *, now: float) -> list[Claim]:
        check_claim_limit(limit)
        keys = [self._recipients_key, self._claims_key, self._meta_key]
        reply = self._run(self._claim, keys, [limit])
        claim_id = int(reply[0])
        recipient_ids = reply[1:]
        if recipient_ids and isinstance(recipient_ids[0], bytes):
            recipient_ids = [recipient_id.decode() for recipient_id in recipient_ids]
        return [Claim(recipient_id, claim_id) for recipient_id in recipient_ids]

    def release(self, claims: Sequence[Claim], *, now: float) -> int:
        keys = [self._recipients_key, self._claims_key]
        released = 0
        for offset in range(0, len(claims), _SCRIPT_CHUNK):
            args: list[str | int] = []
            for claim in claims[offset : offset + _SCRIPT_CHUNK]:
                args += (claim.recipient_id, claim.claim_id)
            released += int(self._run(self._release, keys, args))
        return released

    def begin_delivery(
        self, recipient_id: str, claim_id: int | None, *, now: float
    ) -> DeliveryStart:
        keys = [self._recipients_key, self._claims_key, self._meta_key]
        args = [recipient_id, "" if claim_id is None else claim_id]
        return DeliveryStart(_text(self._run(self._begin_delivery, keys, args)))

    def finish_delivery(
        self,
        recipient_id: str,
        claim_id: int | None,
        outcome: RecipientState,
        *,
        now: float,
        error: str | None = None,
    ) -> bool:
        if outcome not in (RecipientState.SENT, RecipientState.FAILED, RecipientState.PENDING):
            raise ValueError(f"a delivery cannot finish as {outcome.value!r}")
        # The error text stays through retries and goes once the recipient is sent.
        if outcome is RecipientState.FAILED and error is not None:
            error_action = "set"
        elif outcome is RecipientState.PENDING:
            error_action = "keep"
        else:
            error_action = "clear"

        keys = [self._recipients_key, self._claims_key, self._errors_key]
        args = [
            recipient_id,
            "" if claim_id is None else claim_id,
            _BANDS[outcome],
            error_action,
            error or "",
        ]
        return bool(int(self._run(self._finish_delivery, keys, args)))

    def retry_failed(self, *, now: float) -> int:
        # Many small calls instead of one, so the server never stalls on a huge campaign.
        moved = 0
        while True:
            batch = int(self._run(self._retry_failed, [self._recipients_key], [_SCRIPT_CHUNK]))
            moved += batch
            if batch < _SCRIPT_CHUNK:
                return moved

    def suppress(self, recipient_ids: Sequence[str], *, now: float) -> int:
        suppressed = 0
        for offset in range(0, len(recipient_ids), _SCRIPT_CHUNK):
            chunk = list(recipient_ids[offset : offset + _SCRIPT_CHUNK])
            suppressed += int(self._run(self._suppress, [self._recipients_key], chunk))
        return suppressed

    def counts(self) -> Counts:
        reply = self._run(self._counts, [self._recipients_key], [])
        return Counts.from_mapping(
            {_STATES_BY_BAND[band].value: int(count) for band, count in enumerate(reply)}
        )

    def lookup(self, recipient_id: str) -> RecipientRecord | None:
        keys = [self._recipients_key, self._claims_key, self._errors_key]
        reply = self._run(self._lookup, keys, [recipient_id])
        if not reply:
            return None
        score, claim_id, error = reply
        return RecipientRecord(
            recipient_id,
            _STATES_BY_BAND[int(float(score)) // BAND_WIDTH],
            int(claim_id) if claim_id else 0,
            _text(error) if error else None,
        )

    def export(self, state: RecipientState) -> Iterator[str]:
        band = _BANDS[RecipientState(state)]
        low = str(band * BAND_WIDTH)
        high = f"({(band + 1) * BAND_WIDTH}"
        while True:
            rows = self._read_range(low, high, _EXPORT_CHUNK)
            for recipient_id, _ in rows:
                yield _text(recipient_id)
            if len(rows) < _EXPORT_CHUNK:
                return
            # Scores are unique, so resuming after the last one skips nothing even when
            # recipients change state between chunks.
            low = f"({int(rows[-1][1])}"

    # -- campaign control ---------------------------------------------------------------

    def campaign_state(self) -> CampaignState:
        state = self._call(lambda: self._client.hget(self._meta_key, "state"))
        return CampaignState(_text(state)) if state else CampaignState.RUNNING

    def change_campaign_state(self, state: CampaignState) -> CampaignState:
        state = CampaignState(state)
        previous = self._run(self._change_campaign_state, [self._meta_key], [state.value])
        return CampaignState(_text(previous))

    def reserve_pace(self, span: float, *, now: float) -> float:
        args = [repr(float(span)), repr(float(now))]
        start = self._run(self._reserve_pace, [self._meta_key], args)
        return float(_text(start))

    # -- helpers ------------------------------------------------------------------------

    def _read_range(self, low: str, high: str, count: int) -> list[tuple[Any, float]]:
        def read() -> list[tuple[Any, float]]:
            return list(
                self._client.zrangebyscore(
                    self._recipients_key, low, high, start=0, num=count, withscores=True
                )
            )

        return self._call(read)

    def _reserve_sequences(self, count: int) -> int:
        end = int(self._call(lambda: self._client.hincrby(self._meta_key, "sequence", count)))
        if end >= BAND_WIDTH:
            raise LedgerError(
                f"campaign {self._campaign!r} has used all {BAND_WIDTH} import positions of "
                "the Redis ledger; start a new campaign",
                campaign=self._campaign,
            )
        return end - count

    def _run(self, script: Script, keys: list[str], args: Sequence[str | int]) -> Any:
        return self._call(lambda: script(keys=keys, args=args, client=self._client))

    def _call(self, operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except ResponseError as exc:
            message = str(exc).lower()
            if "unknown command" in message and ("eval" in message or "script" in message):
                raise _missing_lua_error(self._client, self._campaign) from exc
            raise self._ledger_error(exc) from exc
        except RedisError as exc:
            raise self._ledger_error(exc) from exc

    def _ledger_error(self, exc: RedisError) -> LedgerError:
        # redis-py's messages name the host and port, never the password.
        return LedgerError(
            f"Redis ledger failed for campaign {self._campaign!r}: "
            f"{type(exc).__name__}: {exc}",
            campaign=self._campaign,
        )


def ledger_from_url(url: str, campaign: str) -> RedisLedger:
    """Open a :class:`RedisLedger` on the server that ``url`` names.

    The URL is read by ``redis.Redis.from_url``: ``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` for TLS, ``unix:///path/to/socket``.
    """
    try:
        client = redis.Redis.from_url(url)
    except (ValueError, RedisError) as exc:
        raise LedgerError(
            f"invalid Redis URL {_redact(url)!r}: {exc}", campaign=campaign
        ) from exc
    return RedisLedger(client, campaign)


def _redact(url: str) -> str:
    # Keep the scheme, host, port and path, which help find the mistake; drop credentials
    # and the query string, which may carry a password too.
    parts = urlsplit(url)
    address = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{address}{parts.path}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_fakeredis(client: RedisClient) -> bool:
    return type(client).__module__.split(".", 1)[0] == "fakeredis"


def _check_lua_support(client: RedisClient) -> None:
    # fakeredis runs scripts only when lupa is installed, and without it every script
    # call fails as an unknown command; saying so at construction saves a confusing trace.
    if _is_fakeredis(client) and importlib.util.find_spec("lupa") is None:
        raise _missing_lua_error(client, None)


def _missing_lua_error(client: RedisClient, campaign: str | None) -> Exception:
    if _is_fakeredis(client):
        return MissingDependencyError(
            "the Redis ledger needs Lua scripting, which fakeredis provides only with lupa "
            "installed: pip install lupa (or pip install 'fakeredis[lua]')"
        )
    return LedgerError(
        "the Redis server rejected EVALSHA as an unknown command; the Redis ledger needs a "
        "server with Lua scripting enabled",
        campaign=campaign,
    )
