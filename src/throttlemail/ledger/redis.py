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
from ..errors import CampaignNotFoundError, LedgerError, MissingDependencyError
from ._redis_scripts import (
    BAND_WIDTH,
    BEGIN_DELIVERY,
    CHANGE_CAMPAIGN_STATE,
    CLAIM,
    COUNTS,
    FINISH_DELIVERY,
    LOOKUP,
    RELEASE,
    RESERVE_PACE,
    RETRY_FAILED,
    RETURN_PACE,
    SUPPRESS,
)
from .base import RecipientRecord, check_claim_limit, check_delivery_outcome

logger = logging.getLogger(__name__)

RedisClient: TypeAlias = Any
"""A ``redis.Redis`` or ``redis.cluster.RedisCluster`` client.

Typed loosely because redis-py's own annotations and the separate ``types-redis`` stubs
disagree on whether ``Redis`` is generic, and the module must check cleanly under either.
"""

_T = TypeVar("_T")

_BANDS = {state: band for band, state in enumerate(RecipientState)}
_STATES_BY_BAND = dict(enumerate(RecipientState))
# The Lua scripts hard-code the band of each state, so the enum order must match them.
assert list(_BANDS.values()) == list(range(len(RecipientState)))

# Ids per ZADD command when importing: large enough that per-command overhead vanishes,
# small enough that each command takes the server only milliseconds (about 5 ms for 5,000
# ids on the benchmark machine).
_ADD_CHUNK = 5_000
# Ids per script call for release and suppress, and the most recipients that one
# retry_failed call moves, for the same reason.
_SCRIPT_CHUNK = 5_000
_EXPORT_CHUNK = 10_000


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
    each state is one score range. Counts are six ``ZCOUNT`` calls, and claiming is a
    ``ZRANGEBYSCORE`` over the pending range, in import order. A recipient that was
    never claimed costs only its sorted-set entry. Claiming adds a ``claims`` field that
    stays, so that :meth:`lookup` can name the latest claim of a sent recipient. ``meta``'s
    ``sequence`` counts the import positions handed out so far.
    """

    def __init__(
        self,
        client: RedisClient,
        campaign: str,
        *,
        key_prefix: str = "throttlemail",
        create: bool = True,
    ) -> None:
        if not campaign or "{" in campaign or "}" in campaign:
            raise ValueError(
                f"invalid campaign name {campaign!r} for a Redis ledger: it must be non-empty "
                "and contain no '{' or '}', which would break the Redis Cluster hash tag"
            )
        _check_lua_support(client)

        self._client = client
        self._owns_client = False
        # With create=False the first call checks that the campaign exists, so that an
        # operator's typo fails instead of pausing an empty new campaign.
        self._must_exist = not create
        self._campaign = campaign
        tag = f"{key_prefix}:{{{campaign}}}"
        self._recipients_key = f"{tag}:recipients"
        self._claims_key = f"{tag}:claims"
        self._errors_key = f"{tag}:errors"
        self._meta_key = f"{tag}:meta"

        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self._begin_delivery = client.register_script(BEGIN_DELIVERY)
        self._finish_delivery = client.register_script(FINISH_DELIVERY)
        self._retry_failed = client.register_script(RETRY_FAILED)
        self._suppress = client.register_script(SUPPRESS)
        self._counts = client.register_script(COUNTS)
        self._lookup = client.register_script(LOOKUP)
        self._change_campaign_state = client.register_script(CHANGE_CAMPAIGN_STATE)
        self._reserve_pace = client.register_script(RESERVE_PACE)
        self._return_pace = client.register_script(RETURN_PACE)

    def __repr__(self) -> str:
        return f"RedisLedger(campaign={self._campaign!r}, key={self._recipients_key!r})"

    @property
    def campaign(self) -> str:
        return self._campaign

    @property
    def client(self) -> RedisClient:
        """The Redis client this ledger uses."""
        return self._client

    def close(self) -> None:
        """Close the client's connections if :func:`ledger_from_url` opened the client.

        A client passed in belongs to the application and is left open. A closed client
        reconnects when used again, so the ledger stays usable.
        """
        if self._owns_client:
            self._client.close()

    # -- recipients ---------------------------------------------------------------------

    def add(self, recipient_ids: Sequence[str], *, now: float) -> int:
        if not recipient_ids:
            return 0
        first = self._reserve_sequences(len(recipient_ids))
        if _can_send_raw_commands(self._client):
            return self._call(lambda: self._add_over_connection(recipient_ids, first))
        return self._call(lambda: self._add_over_pipeline(recipient_ids, first))

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
        check_delivery_outcome(outcome)
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

    def return_pace(self, reserved_end: float, resume_at: float) -> bool:
        args = [repr(float(reserved_end)), repr(float(resume_at))]
        return bool(self._run(self._return_pace, [self._meta_key], args))

    # -- helpers ------------------------------------------------------------------------

    def _read_range(self, low: str, high: str, count: int) -> list[tuple[Any, float]]:
        def read() -> list[tuple[Any, float]]:
            return list(
                self._client.zrangebyscore(
                    self._recipients_key, low, high, start=0, num=count, withscores=True
                )
            )

        return self._call(read)

    def _add_over_pipeline(self, recipient_ids: Sequence[str], first: int) -> int:
        pipe = self._client.pipeline(transaction=False)
        for offset in range(0, len(recipient_ids), _ADD_CHUNK):
            chunk = recipient_ids[offset : offset + _ADD_CHUNK]
            scores = range(first + offset, first + offset + len(chunk))
            pipe.zadd(self._recipients_key, dict(zip(chunk, scores, strict=True)), nx=True)
        return sum(int(added) for added in pipe.execute())

    def _add_over_connection(self, recipient_ids: Sequence[str], first: int) -> int:
        # Same commands as _add_over_pipeline, but encoded here about five times faster
        # than redis-py encodes them, and sent chunk by chunk so the server works on one
        # chunk while the next is encoded.
        key = self._recipients_key.encode()
        pool = self._client.connection_pool
        connection = _get_connection(pool)
        try:
            chunks = 0
            for offset in range(0, len(recipient_ids), _ADD_CHUNK):
                chunk = recipient_ids[offset : offset + _ADD_CHUNK]
                packed = _pack_zadd_nx(key, chunk, first + offset)
                connection.send_packed_command([packed], check_health=chunks == 0)
                chunks += 1
            return sum(int(connection.read_response()) for _ in range(chunks))
        except BaseException:
            # Unread replies would be read as the replies to the next command on it.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

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
        if self._must_exist:
            self._must_exist = False
            self._require_campaign()
        try:
            return operation()
        except ResponseError as exc:
            message = str(exc).lower()
            if "unknown command" in message and ("eval" in message or "script" in message):
                raise _missing_lua_error(self._client, self._campaign) from exc
            raise self._ledger_error(exc) from exc
        except RedisError as exc:
            raise self._ledger_error(exc) from exc

    def _require_campaign(self) -> None:
        # Every import writes the meta hash, so a campaign without it was never populated.
        if self._call(lambda: self._client.exists(self._meta_key)):
            return
        self._must_exist = True
        raise CampaignNotFoundError(
            f"campaign {self._campaign!r} not found on this Redis server (no key "
            f"{self._meta_key!r}); check --campaign and the database number, or import "
            "recipients first",
            campaign=self._campaign,
        )

    def _ledger_error(self, exc: RedisError) -> LedgerError:
        # redis-py's messages name the host and port, never the password.
        return LedgerError(
            f"Redis ledger failed for campaign {self._campaign!r}: "
            f"{type(exc).__name__}: {exc}",
            campaign=self._campaign,
        )


def ledger_from_url(url: str, campaign: str, *, create: bool = True) -> RedisLedger:
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
    ledger = RedisLedger(client, campaign, create=create)
    ledger._owns_client = True
    return ledger


def _redact(url: str) -> str:
    # Keep the scheme, host, port and path, which help find the mistake; drop credentials
    # and the query string, which may carry a password too.
    parts = urlsplit(url)
    address = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{address}{parts.path}"


def _can_send_raw_commands(client: RedisClient) -> bool:
    # Raw commands need a single server (not a cluster), a real socket (not fakeredis),
    # and the UTF-8 encoding that _pack_zadd_nx writes.
    single_server = isinstance(client, redis.Redis)
    if not single_server or _is_fakeredis(client):
        return False
    encoder = client.get_encoder()
    return bool(
        encoder.encoding.lower().replace("-", "") == "utf8"
        and encoder.encoding_errors == "strict"
    )


def _get_connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:
        # redis-py before 5.3 requires a command name, and later versions warn about it.
        return pool.get_connection("ZADD")


def _pack_zadd_nx(key: bytes, recipient_ids: Sequence[str], first: int) -> bytes:
    """Encode ``ZADD key NX first id0 first+1 id1 ...`` in the Redis protocol (RESP)."""
    header = b"*%d\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n$2\r\nNX\r\n" % (
        3 + 2 * len(recipient_ids), len(key), key,
    )
    scores = map(str, range(first, first + len(recipient_ids)))
    if all(recipient_id.isascii() for recipient_id in recipient_ids):
        # One character is one byte, so string lengths are byte lengths.
        body = "".join(
            [
                f"${len(score)}\r\n{score}\r\n${len(rid)}\r\n{rid}\r\n"
                for score, rid in zip(scores, recipient_ids, strict=True)
            ]
        )
        return header + body.encode("ascii")
    encoded = [recipient_id.encode() for recipient_id in recipient_ids]
    return header + b"".join(
        [
            b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(score), score.encode(), len(rid), rid)
            for score, rid in zip(scores, encoded, strict=True)
        ]
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_fakeredis(client: RedisClient) -> bool:
    return type(client).__module__.split(".", 1)[0] == "fakeredis"


def _check_lua_support(client: RedisClient) -> None:
    # fakeredis runs scripts only when lupa is installed. Without it every script call
    # fails as an unknown command, so the ledger reports the missing package when it is built.
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
