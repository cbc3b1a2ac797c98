"""The authoritative DNS answerer: one query's wire bytes in, the reply's wire bytes out.

`DnsAnswerer.answer()` is synchronous and touches no socket; `glb.dns.server` calls it inline for
every TCP message, and `DnsAnswerer.answer_udp()` for every UDP datagram: that one first looks the
datagram up in the cache's exact-query memo (a repeat, but for its ID, of a query answered from
the cache: its reply whole, see `glb.dns.memo`), else it is `answer()`. The cache
(`glb.dns.cache`) answers most other queries while it is current; the full path takes the rest
in three steps, each its own module:

1. `glb.dns.query.parse_query`: header, the single question and the OPT record; anything
   malformed becomes FORMERR (or a drop when not even a header can be read, or the packet is a
   response). Opcodes other than QUERY get a header-only NOTIMP (their sections mean other
   things, e.g. UPDATE's zone).
2. `glb.dns.resolution.Resolver.resolve_query`: the `Resolution` (rcode, AA, records) from the
   pre-built `ZoneIndex` and, for service names, `glb.core.policies.decide`.
3. `glb.dns.render.render`: header flags, question (in the query's own case), OPT, and
   truncation for UDP (512 bytes without EDNS, else the client's size clamped to 512..1232).

The cache packs its replies through a `Packer` over a resolver of its own: the same steps 2 and
3, so both paths give the same bytes. Both count through one `ReplyCounter` (`glb.dns.counting`).

No sockets; asyncio only for `DnsAnswerer.update_async`, which packs a new topology's replies in
a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import struct
import time
from collections.abc import Iterator
from typing import Final

from glb.core.model import Topology
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats
from glb.dns.cache import DnsCache
from glb.dns.cookies import ServerCookies, new_master_secret
from glb.dns.counting import QTYPE_LABELS, RCODE_LABELS, ReplyCounter
from glb.dns.query import DnsQuery, Malformed, parse_query
from glb.dns.render import Packer, render, render_error, truncated
from glb.dns.resolution import SERVFAIL_RESOLUTION, Resolution, Resolver, SnapshotSource, Tables
from glb.dns.wire import HEADER_SIZE, OPCODE_MASK, Flag, Rcode

logger = logging.getLogger(__name__)

_QR: Final = int(Flag.QR)
_USED, _MALFORMED, _ZERO_PREFIX = "used", "malformed", "zero_prefix"  # ECS query counts
_ID_FLAGS: Final = struct.Struct("!HH")


def wall_clock() -> int:
    """Seconds since the epoch: the clock of server cookies' timestamps."""
    return int(time.time())


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a new topology's ~10^6 objects are made, then
    freeze them (`gc.freeze()`: out of every later collection; reference counting still frees
    them). Collections walking them, 100-600 ms each at 10,000 services and run by whichever
    thread allocates while holding the GIL, would stall the event loop answering meanwhile; with
    the collector merely paused, the first collection after it walks them all at once."""
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what exists already (the old topology) too: refcounting frees it later
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class DnsAnswerer:
    """Answers queries for the topology's zones, steering service names by the current health.

    `answer()` first asks the `DnsCache` of pre-packed replies, which is valid only while
    `snapshot()` still returns the snapshot it was built for (`_current_cache`); otherwise, and
    for anything the cache does not hold, the full path parses, resolves and packs.
    `answer_udp()` tries the cache's exact-query memo first, under the same rule. Keep the cache
    current by calling `on_snapshot(snapshot)` after each publish
    (`Monitor.subscribe(answerer.on_snapshot)`): a stale cache is never rebuilt on the query
    path, only bypassed. Round robin advances one per-service counter shared by both paths.
    Replies count in `stats`. Not thread-safe (one event loop calls it).
    """

    def __init__(
        self,
        topology: Topology,
        snapshot: SnapshotSource,
        rng: random.Random | None = None,
        stats: Stats | None = None,
        query_sample: float = 0.0,
        server_id: str | None = None,
        cookies: ServerCookies | None = None,
    ) -> None:
        self._counter = ReplyCounter(stats or Stats())
        # DNS Cookies (RFC 7873) on both paths; a worker process is given its main's secret
        self._cookies = cookies or ServerCookies(new_master_secret(), wall_clock)
        self._server_id = server_id  # answered to CH TXT id.server (None: REFUSED)
        self._query_sample = query_sample  # share of queries logged (0: none)
        self._snapshot = snapshot
        self._rng = rng or random.Random()
        self.full_path_queries = 0  # messages the cache did not answer
        self._building: DnsCache | None = None  # packed by update_async, not yet swapped in
        self.update(topology)

    @property
    def stats(self) -> Stats:
        """Where replies are counted."""
        return self._counter.stats

    @property
    def cache(self) -> DnsCache:
        return self._cache

    # -- topology and health --------------------------------------------------------------

    def update(self, topology: Topology) -> None:
        """Answer for a new topology from the next query on (a configuration reload); packs the
        new cache for the current snapshot on this thread, which can take seconds at 10,000
        services: on an event loop, use `update_async`. Its objects are frozen out of the cyclic
        collector, as `update_async`'s are (at start-up too: else the first full collections
        walk them all, stalling answers for tens of milliseconds)."""
        with _collector_held():
            self._install(Tables.of(topology), self._rng)
            snapshot = self._snapshot_or_none()
            if snapshot is not None:
                self.on_snapshot(snapshot)

    async def update_async(self, topology: Topology) -> None:
        """`update()` without stalling the event loop. The new zone index is built in a worker
        thread, then put in force at once (the full path answers the new topology from the next
        query on); the new cache is packed in a worker thread too, swapped in back on the loop
        and brought up to the snapshot current then. Until the swap the full path answers, and
        `on_snapshot` leaves the pending cache alone. A later update supersedes a pending one."""
        with _collector_held():
            tables = await asyncio.to_thread(Tables.of, topology)
        retired = [self._cache, self._resolver]  # freed in a worker thread, not on the loop
        cache = self._install(tables, random.Random(self._rng.getrandbits(64)))
        await asyncio.to_thread(retired.clear)
        snapshot = self._snapshot_or_none()
        if snapshot is None:
            return
        self._building = cache
        try:
            with _collector_held():
                await asyncio.to_thread(cache.prepare, snapshot)
        except Exception:  # the full path answers until the next update
            logger.exception("could not pack DNS replies for the new topology")
            return
        if self._building is not cache:
            return  # superseded while packing
        self._building = None
        cache.activate()
        if (current := self._snapshot_or_none()) is not None:
            self.on_snapshot(current)

    def _install(self, tables: Tables, rng: random.Random) -> DnsCache:
        """Put `tables` in force for the full path; return their cache, not built yet, which
        packs through a resolver of its own over `tables` drawing from `rng` (so it may pack in
        another thread: nothing else uses that resolver)."""
        self._resolver = Resolver(tables, self._rng, self._server_id)
        self._building = None
        retired: DnsCache | None = getattr(self, "_cache", None)  # None: the first install
        if retired is not None:
            retired.retire()  # its last counts; it answers no more
        self._cache = DnsCache(
            tables.topology,
            tables.index.nodes,
            Packer(Resolver(tables, rng)),
            tables.rotation,
            rng,
            self._counter,
            memoize=self._query_sample == 0,  # memo hits would skip the sampling
            rankings=tables.rankings,
            cookies=self._cookies,
        )
        return self._cache

    def _snapshot_or_none(self) -> HealthSnapshot | None:
        try:
            return self._snapshot()
        except Exception:  # the full path will answer SERVFAIL and log it
            logger.debug("no snapshot to pre-pack DNS replies for", exc_info=True)
            return None

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        """Re-pack the replies `snapshot` changes, before it is served (a monitor subscriber)."""
        if self._building is not None:  # update_async catches up when it swaps the cache in
            return
        try:
            self._cache.refresh(snapshot)
        except Exception:  # the cache stays stale, hence bypassed, until a refresh succeeds
            logger.exception("could not re-pack DNS replies; answering on the full path")

    def _current_cache(self) -> DnsCache | None:
        """The cache, if it was built for the snapshot in force now; else None (the full path
        answers; a broken snapshot source too: the full path answers SERVFAIL and logs it)."""
        cache = self._cache
        try:
            return cache if cache.snapshot is self._snapshot() else None
        except Exception:
            return None

    # -- answering ------------------------------------------------------------------------

    def answer_udp(self, wire: bytes, source: str | None = None) -> bytes | None:
        """`answer(wire, False)`, quicker for a query seen before byte for byte but its ID: the
        cache's exact-query memo holds its replies whole, so while the cache is current the
        reply is one dict lookup, a tally slot bumped and the ID prepended. This bound method is
        the `udp_handler` of `glb.dns.server` (`udp_handler(wire, source)`)."""
        hit = self._cache.exact.get(wire[2:])
        if hit is not None and self._current_cache() is not None:
            cuts, order, counter, n, counts = hit
            tail, slot = cuts[order[next(counter) % n]]
            counts[slot] += 1
            return wire[:2] + tail
        return self.answer(wire, False, source)

    def answer(self, wire: bytes, tcp: bool, source: str | None = None) -> bytes | None:
        """Reply to one DNS message from `source` (the sender's address: who the client is for
        geo services, unless an ECS option says otherwise); None means drop (unparseable
        header, or a response/QR=1 packet). This bound method is itself a `glb.dns.server`
        handler (`handler(wire, tcp, source)`)."""
        sampled = self._query_sample > 0 and self._rng.random() < self._query_sample
        if not sampled and (cache := self._current_cache()) is not None:
            reply = cache.reply(wire, tcp, source)
            if reply is not None:
                return reply
        return self.answer_full(wire, tcp, source, sampled=sampled)

    def answer_full(
        self, wire: bytes, tcp: bool, source: str | None = None, *, sampled: bool = False
    ) -> bytes | None:
        """`answer()` without the cache: parse, resolve and pack (the reference behaviour)."""
        self.full_path_queries += 1
        if len(wire) < HEADER_SIZE:
            self._counter.count_dropped()
            return None
        ident, flags = _ID_FLAGS.unpack_from(wire)
        if flags & _QR:
            return None
        try:
            return self._answer(wire, ident, flags, source, tcp=tcp, sampled=sampled)
        except Exception:  # the last resort: a bare SERVFAIL cannot fail to pack
            logger.exception("failed to answer a DNS message (id %d)", ident)
            return render_error(ident, flags, None, Rcode.SERVFAIL)

    def _answer(
        self, wire: bytes, ident: int, flags: int, source: str | None, *, tcp: bool, sampled: bool
    ) -> bytes:
        if flags & OPCODE_MASK:  # header only: other opcodes give the sections other meanings
            self._counter.count_error(tcp, Rcode.NOTIMP)
            return render_error(ident, flags, None, Rcode.NOTIMP)
        try:
            query = parse_query(wire)
        except Malformed as exc:
            logger.debug("FORMERR for id %d: %s", ident, exc)
            self._counter.count_error(tcp, Rcode.FORMERR)
            if exc.subnet:
                self._counter.count_subnet(_MALFORMED)
            return render_error(ident, flags, exc.question, Rcode.FORMERR)
        if query.edns is not None and query.edns.subnet is not None:
            self._counter.count_subnet(_USED if query.edns.subnet.source else _ZERO_PREFIX)
        try:
            resolution = self._resolver.resolve_query(query, self._snapshot, source)
        except Exception:
            logger.exception("failed to answer %s (id %d)", query.question.name, ident)
            resolution = SERVFAIL_RESOLUTION
        cookie = b""
        if query.edns is not None and query.edns.cookie is not None:
            cookie = self._cookies.reply_option(query.edns.cookie, source)
        reply = render(query, resolution, limit=None if tcp else query.udp_limit(), cookie=cookie)
        qtype, cut = query.question.qtype, truncated(reply)
        self._counter.count(tcp, qtype, resolution.rcode, resolution.steered, truncated=cut)
        if sampled:
            _log_query(tcp, query, resolution)
        return reply


def _log_query(tcp: bool, query: DnsQuery, resolution: Resolution) -> None:
    transport = "tcp" if tcp else "udp"
    question = query.question
    qtype = QTYPE_LABELS.get(question.qtype, str(question.qtype))
    rcode = RCODE_LABELS.get(resolution.rcode, str(resolution.rcode))
    answers = [str(rr.rdata) for rr in resolution.answer]
    logger.info(
        "query %s %s %s -> %s %s",
        transport,
        question.name,
        qtype,
        rcode,
        " ".join(answers) or "(no answer)",
        extra={
            "event": "dns_query",
            "qname": str(question.name),
            "qtype": qtype,
            "rcode": rcode,
            "answers": answers,
            "transport": transport,
        },
    )
