"""Failover drills as records: which cluster was taken out, how, by whom, and what it did.

A `Drill` takes one cluster out of the answers for a while, either through the normal drain path
(`DrillMode.DRAIN`) or by making every probe of its targets fail (`DrillMode.FAIL`, so detection
is rehearsed too), and keeps a `DrillReport`: the counts before and during it (`Tally`, per
cluster), how long until answers and proxied requests stopped naming the cluster (from counter
samples) and until the published snapshot stopped steering to it (`steers_to`).

States: running, then finished (its duration ran out), cancelled (ended early through the API)
or interrupted (glb stopped or restarted while it ran). `Drill.to_json()` / `drill_from_json()`
convert to and from the state file's `drills` entries; bad stored data raises `BadDrillRecord`
naming the key path. Times are epoch seconds (wall clock), spans plain seconds.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, TypeVar

from glb.core.drains import BadStateDocument, format_instant, instant_at
from glb.core.model import Service, Topology
from glb.core.policies import STABLE, Query, decide
from glb.core.snapshot import HealthSnapshot
from glb.core.stats import Stats

DRILL_WHO: Final = "drill"  # who the drain of a drain drill is recorded as
INTERRUPTED_BY_RESTART: Final = "interrupted by a restart"
INTERRUPTED_BY_SHUTDOWN: Final = "interrupted by a shutdown"
DNS_FAMILIES: Final = (4, 6)  # what a DNS answer may be asked for (A, AAAA)
PROXY_FAMILIES: Final = (None,)  # the proxy steers to any family
_ID: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}", re.ASCII)
_MAX_TEXT: Final = 253
_MAX_CLUSTERS: Final = 10_000  # entries of a stored tally; more is not a file glb wrote


class DrillMode(StrEnum):
    DRAIN = "drain"  # drained through the normal drain path (who "drill")
    FAIL = "fail"  # every probe of its targets fails: rise/fall takes it out


class DrillState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"  # its duration ran out; the cluster was restored
    CANCELLED = "cancelled"  # ended early (DELETE); the cluster was restored
    INTERRUPTED = "interrupted"  # glb stopped while it ran; restored then or at start-up


class DrillNotSaved(Exception):
    """The drills could not be written to the state file; the message names the file and why."""


class BadDrillRecord(BadStateDocument):
    """A stored drill that cannot be used; the message names the key path and the problem.
    (A time in it that cannot be read raises the BadStateDocument of `glb.core.drains`.)"""


def drill_id(started: float, token: int) -> str:
    """`20261206T224100Z-3fa2c1`: the start time (UTC, to the second) and 24 random bits."""
    stamp = format_instant(started)[:19].replace("-", "").replace(":", "")
    return f"{stamp}Z-{token & 0xFFFFFF:06x}"


def is_drill_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts per cluster and the errors seen: totals since start-up (a sample) or the
    difference of two samples (a window). `answers`: addresses handed out in DNS answers;
    `proxied`: requests the proxy sent to the cluster ("none": answered without one)."""

    answers: Mapping[str, int] = field(default_factory=dict)
    proxied: Mapping[str, int] = field(default_factory=dict)
    proxy_5xx: int = 0  # proxied requests answered 5xx (by the upstream or by glb)
    proxy_502: int = 0  # ... of which 502 (glb could not get an answer from any endpoint)
    servfail: int = 0  # DNS queries answered SERVFAIL

    def minus(self, earlier: Tally) -> Tally:
        """What was counted between `earlier` and this sample."""
        return Tally(
            _difference(self.answers, earlier.answers),
            _difference(self.proxied, earlier.proxied),
            max(0, self.proxy_5xx - earlier.proxy_5xx),
            max(0, self.proxy_502 - earlier.proxy_502),
            max(0, self.servfail - earlier.servfail),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "answers": dict(sorted(self.answers.items())),
            "proxied": dict(sorted(self.proxied.items())),
            "errors": {
                "proxy_5xx": self.proxy_5xx,
                "proxy_502": self.proxy_502,
                "servfail": self.servfail,
            },
        }


def _difference(later: Mapping[str, int], earlier: Mapping[str, int]) -> dict[str, int]:
    return {key: max(0, count - earlier.get(key, 0)) for key, count in later.items()}


def tally_of(stats: Stats) -> Tally:
    """The counts a drill follows, read from `stats` (settled first: none pending)."""
    stats.settle()
    answers: Counter[str] = Counter()
    for (_, cluster), count in stats.dns_answers.items():
        answers[cluster] += count
    proxied: Counter[str] = Counter()
    failed = bad_gateway = 0
    for (_, cluster, code), count in stats.proxy_requests.items():
        proxied[cluster] += count
        if code.startswith("5"):
            failed += count
            bad_gateway += count if code == "502" else 0
    servfail = sum(n for (_, _, rcode), n in stats.dns_queries.items() if rcode == "SERVFAIL")
    return Tally(dict(answers), dict(proxied), failed, bad_gateway, servfail)


@dataclass(frozen=True, slots=True)
class Window:
    """The counts over `seconds` (before the drill, or during it)."""

    seconds: float
    tally: Tally

    def to_json(self) -> dict[str, object]:
        return {"seconds": round(self.seconds, 3), **self.tally.to_json()}


@dataclass(frozen=True, slots=True)
class DrillReport:
    """What a drill measured. The `*_stopped_after` times are read from counter samples taken
    every `resolution` seconds: the time of the last sample in which the cluster's count still
    grew (0 when it never did; None when it still grew in the drill's last sample). The
    `*_steered_away_after` times are exact: when the published snapshot stopped steering any
    answer (DNS) or request (proxy) to the cluster (None: it still did at the end)."""

    resolution: float
    before: Window | None = None
    during: Window | None = None
    answers_stopped_after: float | None = None
    proxy_stopped_after: float | None = None
    dns_steered_away_after: float | None = None
    proxy_steered_away_after: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "resolution_seconds": self.resolution,
            "answers_stopped_after_seconds": _rounded(self.answers_stopped_after),
            "proxy_stopped_after_seconds": _rounded(self.proxy_stopped_after),
            "dns_steered_away_after_seconds": _rounded(self.dns_steered_away_after),
            "proxy_steered_away_after_seconds": _rounded(self.proxy_steered_away_after),
            "before": None if self.before is None else self.before.to_json(),
            "during": None if self.during is None else self.during.to_json(),
        }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


@dataclass(frozen=True, slots=True)
class Drill:
    id: str
    cluster: str
    mode: DrillMode
    who: str  # who started it: "api from <address>"
    started: float  # epoch seconds
    duration: float  # seconds it was asked to last
    report: DrillReport
    state: DrillState = DrillState.RUNNING
    ended: float | None = None  # epoch seconds
    note: str | None = None  # how it ended, when not by itself: who cancelled it, a restart

    @property
    def running(self) -> bool:
        return self.state is DrillState.RUNNING

    @property
    def ends(self) -> float:
        """When it ends by itself (epoch seconds)."""
        return self.started + self.duration

    @property
    def drain_reason(self) -> str:
        """The reason recorded on the drain of a drain drill: names the drill."""
        return f"drill {self.id} ({self.duration:g}s)"

    def ended_as(self, state: DrillState, at: float, note: str | None = None) -> Drill:
        return replace(self, state=state, ended=at, note=note)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "cluster": self.cluster,
            "mode": self.mode.value,
            "state": self.state.value,
            "who": self.who,
            "started": format_instant(self.started),
            "duration_seconds": self.duration,
            "ends": format_instant(self.ends),
            "ended": None if self.ended is None else format_instant(self.ended),
            "note": self.note,
            "report": self.report.to_json(),
        }


def steers_to(
    topology: Topology, snapshot: HealthSnapshot, cluster: str, families: tuple[int | None, ...]
) -> bool:
    """Whether `snapshot` may steer an answer for `families` to `cluster` in any service: it is
    in the answer `decide()` gives (a policy that varies per query or per client: it is among
    the candidates one draw could answer)."""
    return any(_steers(s, snapshot, cluster, families) for s in topology.services)


def _steers(
    service: Service, snapshot: HealthSnapshot, cluster: str, families: tuple[int | None, ...]
) -> bool:
    if all(e.cluster != cluster for e in service.endpoints):
        return False
    for family in families:
        decision = decide(service, snapshot, Query(family=family), random.Random(0))
        shown = decision.answer if service.policy in STABLE else decision.ranked
        if any(e.cluster == cluster for e in shown):
            return True
    return False


# --- from stored JSON ----------------------------------------------------------------------------

_KEYS: Final = frozenset(
    {"id", "cluster", "mode", "state", "who", "started", "duration_seconds", "ends", "ended"}
    | {"note", "report"}
)
_REPORT_KEYS: Final = frozenset(
    {"resolution_seconds", "before", "during", "answers_stopped_after_seconds"}
    | {"proxy_stopped_after_seconds", "dns_steered_away_after_seconds"}
    | {"proxy_steered_away_after_seconds"}
)
_WINDOW_KEYS: Final = frozenset({"seconds", "answers", "proxied", "errors"})
_ERROR_KEYS: Final = frozenset({"proxy_5xx", "proxy_502", "servfail"})
_E = TypeVar("_E", bound=StrEnum)


def drill_from_json(item: object, path: str) -> Drill:
    """A drill as `Drill.to_json()` wrote it; BadStateDocument (BadDrillRecord, mostly) naming
    `path` and the problem."""
    data = _object(item, path, _KEYS)
    drill_id_ = _text(data, "id", path)
    if not is_drill_id(drill_id_):
        raise BadDrillRecord(f"{path}.id: {drill_id_[:40]!r} is not a drill id")
    started = instant_at(data, "started", path)
    if started is None:
        raise BadDrillRecord(f"{path}.started: missing")
    return Drill(
        drill_id_,
        _text(data, "cluster", path),
        _choice(DrillMode, data, "mode", path),
        _text(data, "who", path),
        started,
        _seconds(data.get("duration_seconds"), f"{path}.duration_seconds"),
        _report(data.get("report"), f"{path}.report"),
        _choice(DrillState, data, "state", path),
        instant_at(data, "ended", path),
        _optional_text(data, "note", path),
    )


def _report(item: object, path: str) -> DrillReport:
    data = _object(item, path, _REPORT_KEYS)
    return DrillReport(
        _seconds(data.get("resolution_seconds"), f"{path}.resolution_seconds"),
        _window(data.get("before"), f"{path}.before"),
        _window(data.get("during"), f"{path}.during"),
        *(_maybe_seconds(data, key, path) for key in _TIMES),
    )


_TIMES: Final = (
    "answers_stopped_after_seconds",
    "proxy_stopped_after_seconds",
    "dns_steered_away_after_seconds",
    "proxy_steered_away_after_seconds",
)


def _window(item: object, path: str) -> Window | None:
    if item is None:
        return None
    data = _object(item, path, _WINDOW_KEYS)
    errors = _object(data.get("errors"), f"{path}.errors", _ERROR_KEYS)
    counts = {k: _count(errors.get(k), f"{path}.errors.{k}") for k in sorted(_ERROR_KEYS)}
    tally = Tally(
        _counts(data.get("answers"), f"{path}.answers"),
        _counts(data.get("proxied"), f"{path}.proxied"),
        **counts,
    )
    return Window(_seconds(data.get("seconds"), f"{path}.seconds"), tally)


def _object(item: object, path: str, keys: frozenset[str]) -> dict[str, object]:
    if not isinstance(item, dict):
        raise BadDrillRecord(f"{path}: must be a JSON object")
    unknown = sorted(str(key) for key in set(item) - keys)
    if unknown:
        raise BadDrillRecord(f"{path}: unknown key(s): {', '.join(unknown)}")
    return item


def _text(data: dict[str, object], key: str, path: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise BadDrillRecord(f"{path}.{key}: must be a non-empty string of at most {_MAX_TEXT}")
    return value


def _optional_text(data: dict[str, object], key: str, path: str) -> str | None:
    return None if data.get(key) is None else _text(data, key, path)


def _choice(kind: type[_E], data: dict[str, object], key: str, path: str) -> _E:
    value = data.get(key)
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(each.value for each in kind)
        raise BadDrillRecord(f"{path}.{key}: must be one of {allowed}") from None


def _seconds(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadDrillRecord(f"{path}: must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise BadDrillRecord(f"{path}: must be a finite number of seconds, zero or more")
    return float(value)


def _maybe_seconds(data: dict[str, object], key: str, path: str) -> float | None:
    value = data.get(key)
    return None if value is None else _seconds(value, f"{path}.{key}")


def _count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadDrillRecord(f"{path}: must be a whole number, zero or more")
    return value


def _counts(item: object, path: str) -> dict[str, int]:
    if not isinstance(item, dict) or len(item) > _MAX_CLUSTERS:
        raise BadDrillRecord(f"{path}: must be a JSON object of counts by cluster")
    counts: dict[str, int] = {}
    for key, value in item.items():
        if not isinstance(key, str) or not key or len(key) > _MAX_TEXT:
            raise BadDrillRecord(f"{path}: a cluster name must be a non-empty string")
        counts[key] = _count(value, f"{path}.{key}")
    return counts
