"""Active probing as the composition root assembles it (main process only): the prober of
`probes.*` (`prober`: CA file, source address, checked at start) and the idle connections held to
every probe target (`hold_connections`)."""

from __future__ import annotations

import contextlib
import ssl

from glb.config import Settings, runtime
from glb.errors import StartupError
from glb.health.held import HeldConnections
from glb.health.monitor import Monitor
from glb.health.probes import Prober, source_problem


def prober(settings: Settings) -> Prober:
    """The prober of `probes.*`; a StartupError when its CA file or source address is unusable."""
    ca_file = runtime.ca_file(settings)
    source = runtime.probe_source(settings)
    if source is not None and (problem := source_problem(source)):
        raise StartupError(f"probes.source: {problem}")
    try:
        return Prober(ca_file=ca_file, source=source)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"probes.ca_file: cannot load {ca_file}: {exc}") from None


def hold_connections(stack: contextlib.AsyncExitStack, prober: Prober, monitor: Monitor) -> None:
    """One idle connection per probe target, following the monitor's targets across reloads;
    a lost one probes its target at once. Closed on exit."""
    held = HeldConnections(prober, monitor.probe_now)
    held.follow(monitor.topology.targets())
    monitor.subscribe(lambda _: held.follow(monitor.topology.targets()))
    stack.push_async_callback(held.close)
