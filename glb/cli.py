"""The `glb` command: `serve`, `check`, `demo`, `consistency`, `explain`. The only module that
prints or handles signals.

    glb serve -c FILE     validate FILE, then serve DNS, the HTTP front end and the admin API
                          until SIGINT/SIGTERM; SIGHUP reloads FILE (under systemd: READY=1
                          and STOPPING=1 on $NOTIFY_SOCKET)
                          (--workers N, or GLB_WORKERS: N processes share the DNS and HTTP ports;
                          --watch SECONDS: reload FILE when it changes, looked at that often)
    glb check -c FILE     validate FILE, print every problem, exit 2 if any (if none: OK, and
                          a line per geo service: its clusters' locations, what places clients)
    glb demo              simulated clusters on loopback plus glb, for trying it out
                          (--kubernetes: their addresses discovered from emulated Kubernetes
                          APIs, arriving and moving; --move-every SECONDS)
    glb consistency --peers URL...
                          ask each instance's admin API what it answers now; a line per
                          service they answer differently, with the reason (exit 1), exit 2
                          if an instance cannot be read (--timeout SECONDS, default 5)
    glb explain -c FILE [SERVICE]
                          per service, how long clients take to leave a failed cluster for each
                          failure mode (refused, reset, frozen, 5xx), why, and risky settings
                          (--json; --admin URL: a running glb's observed probe latencies)

The configuration path comes from `-c` or the GLB_CONFIG environment variable. `glb worker` is
internal: `glb serve --workers N` starts N-1 of them (see glb.workers.supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from glb import __version__
from glb.config import Settings, geo_summaries, load_settings
from glb.errors import ConfigError, GLBError, StartupError
from glb.logs import setup_logging

if TYPE_CHECKING:
    from glb.config.models import ServiceSettings
    from glb.reload import FileSignature

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_DISAGREE = 1  # glb consistency: instances answer differently
EXIT_UNREACHABLE = 2  # glb consistency: an instance's admin API cannot be read


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except BrokenPipeError:  # the reader went away (`glb explain | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail too
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glb", description="A traffic-steering global load balancer."
    )
    parser.add_argument("--version", action="version", version=f"glb {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run glb: authoritative DNS, the HTTP front end, health probes and the admin API",
        description="Serve the configuration: authoritative DNS for its zones, the HTTP reverse "
        "proxy front end, health probes and the admin API (status page, /readyz, /metrics) "
        "until SIGINT/SIGTERM; SIGHUP reloads the file.",
    )
    _add_config_option(serve)
    serve.add_argument(
        "-w",
        "--workers",
        type=_positive,
        default=os.environ.get("GLB_WORKERS", "1"),
        help="processes serving DNS and HTTP on shared ports; probes run once (default: "
        "$GLB_WORKERS or 1)",
    )
    serve.add_argument(
        "--watch",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="reload the configuration file when it changes, looking every SECONDS (default: "
        "off; SIGHUP and POST /api/v1/reload always work)",
    )
    serve.set_defaults(command=_serve)
    worker = commands.add_parser("worker")  # internal, unlisted: `glb serve --workers N` starts it
    worker.add_argument("--fd", type=int, required=True)
    worker.add_argument("--log-level", default="info")
    worker.add_argument("--log-format", default="text")
    worker.set_defaults(command=_worker)
    check = commands.add_parser(
        "check", help="validate a configuration file: print every problem, or a summary if none"
    )
    _add_config_option(check)
    check.set_defaults(command=_check)
    demo = commands.add_parser(
        "demo", help="try glb: three simulated clusters on loopback with glb in front of them"
    )
    demo.add_argument(
        "-c",
        "--config",
        help="demo configuration (default: config/demo.yaml, with --kubernetes "
        "config/demo-kubernetes.yaml)",
    )
    demo.add_argument(
        "--kubernetes",
        action="store_true",
        help="discover the clusters' addresses from an emulated Kubernetes API per cluster, "
        "whose Ingress gets its address after 2 s and moves now and then",
    )
    demo.add_argument(
        "--move-every",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="with --kubernetes: move one cluster's load balancer this often (default 30)",
    )
    demo.add_argument(
        "--address-prefix",
        type=_address_prefix,
        default="127.0.1",
        metavar="A.B.C",
        help="with --kubernetes: the clusters' addresses are A.B.C.n and A.B.C.n+10 "
        "(default 127.0.1)",
    )
    demo.set_defaults(command=_demo)
    consistency = commands.add_parser(
        "consistency", help="compare what several running glb instances answer now"
    )
    consistency.add_argument(
        "--peers",
        nargs="+",
        type=_admin_url,
        required=True,
        metavar="URL",
        help="admin API base URLs (http://HOST:PORT)",
    )
    _add_timeout_option(consistency, "for each instance's answer")
    consistency.set_defaults(command=_consistency)
    _add_explain(commands)
    return parser


def _add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = commands.add_parser(
        "explain", help="per service: how long clients take to leave a failed cluster, and why"
    )
    _add_config_option(explain)
    explain.add_argument("service", nargs="?", help="one service (default: every service)")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument(
        "--admin",
        type=_admin_url,
        metavar="URL",
        help="a running glb's admin API (http://HOST:PORT): judge the timeouts against the "
        "probe latencies it observed",
    )
    _add_timeout_option(explain, "for the admin API's answer")
    explain.set_defaults(command=_explain)


def _add_timeout_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--timeout SECONDS (default 5) for an admin API's answer."""
    parser.add_argument(
        "--timeout", type=_seconds, default=5.0, metavar="SECONDS", help=f"{what} (default: 5)"
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of workers")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0.05 to 3600")
    return value


def _admin_url(text: str) -> str:
    from urllib.parse import urlsplit

    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        url = urlsplit("")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an admin API URL (http://HOST:PORT)")
    return text


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("GLB_CONFIG"),
        help="configuration file (default: $GLB_CONFIG)",
    )


def _load(args: argparse.Namespace) -> Settings | None:
    if not args.config:
        print("glb: no configuration file: pass -c FILE or set GLB_CONFIG", file=sys.stderr)
        return None
    try:
        return load_settings(args.config)
    except ConfigError as exc:
        print(f"glb: {args.config} is invalid ({len(exc.reasons)} problem(s)):", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  {reason}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    print(
        f"{args.config}: OK ({len(settings.zones)} zone(s), {len(settings.clusters)} cluster(s), "
        f"{len(settings.services)} service(s))"
    )
    for line in geo_summaries(settings):
        print(line)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from glb.reload import file_signature

    # before reading: a change from then on is reloaded (no path: _load says what is missing)
    loaded = file_signature(args.config) if args.config else None
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    setup_logging(settings.log.level, settings.log.format)
    path, workers, watch = args.config, args.workers, args.watch
    return run_until_signal(
        lambda signals: _serve_until_stopped(settings, path, workers, (watch, loaded), signals),
        advice=lambda exc: taken_port_advice(exc, settings, f"glb serve -c {path}", path),
    )


async def _serve_until_stopped(
    settings: Settings,
    path: str,
    workers: int,
    watch: tuple[float, FileSignature | None],
    signals: Signals,
) -> None:
    """Serve until stopped; with `watch` (interval, the file's signature when it was read) an
    interval above 0, reload the file whenever it changes."""
    from glb.app import running
    from glb.config.runtime import state_path
    from glb.reload import watch_file
    from glb.service_manager import notify

    interval, loaded = watch
    state = state_path(settings, path, os.environ)
    load = lambda: load_settings(path)  # noqa: E731
    async with running(settings, load=load, workers=workers, state_path=state) as glb:
        signals.on_reload = glb.reload
        watcher = None
        if interval:
            watcher = asyncio.create_task(watch_file(path, interval, glb.reload, loaded))
        notify("READY=1")  # systemd (Type=notify): glb serves
        try:
            await signals.stop.wait()
            notify("STOPPING=1")
        finally:
            signals.on_reload = None
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _worker(args: argparse.Namespace) -> int:
    """One worker process: the main tells it when to stop (also on Ctrl-C, which reaches the
    whole process group), so only SIGTERM stops it directly; SIGHUP is the main's."""
    from glb.app import serve_worker

    setup_logging(args.log_level, args.log_format)
    fd = args.fd
    return run_until_signal(lambda signals: serve_worker(fd, signals.stop), worker=True)


def _demo(args: argparse.Namespace) -> int:
    from glb.demo import demo_config_path, run_demo
    from glb.demo_kubernetes import Timings, run_kubernetes_demo

    default = "demo-kubernetes.yaml" if args.kubernetes else "demo.yaml"
    args.config = args.config or demo_config_path(default)
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    setup_logging(settings.log.level, settings.log.format)

    def start(signals: Signals) -> Coroutine[Any, Any, object]:
        if not args.kubernetes:
            return run_demo(settings, signals.stop, announce=_announce)
        timings = Timings(move_every=args.move_every)
        return run_kubernetes_demo(
            settings, signals.stop, announce=_announce, timings=timings, prefix=args.address_prefix
        )

    command = "scripts/demo --kubernetes" if args.kubernetes else "scripts/demo"
    return run_until_signal(
        start, advice=lambda exc: taken_port_advice(exc, settings, f"{command} (or glb demo)")
    )


def _address_prefix(value: str) -> str:
    """Three octets of an IPv4 address: the demo's clusters are value.1 to value.20."""
    try:
        ipaddress.IPv4Address(f"{value}.1")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not the first three octets of an IPv4 address (like 127.0.1)"
        ) from None
    return value


ALTERNATIVE_PORTS = {"dns": 5399, "http": 8088, "admin": 9199}  # suggested when a port is taken


def taken_port_advice(
    exc: GLBError, settings: Settings, command: str, path: str | None = None
) -> list[str]:
    """When `exc` is a listen address that cannot be bound: the setting that chose it and how to
    pick another (in the file at `path`, or by environment for `command`)."""
    if not isinstance(exc, StartupError) or exc.listen is None:
        return []
    for key in ("dns", "http", "admin"):
        host, port = getattr(settings, key).listen
        if (host, port) == exc.listen:
            break
    else:
        return []
    lines = []
    if key == "dns" and port == 5353:
        lines.append("port 5353 is also mDNS's port (avahi, systemd-resolved may hold it)")
    override = f"GLB_{key.upper()}__LISTEN={host}:{ALTERNATIVE_PORTS[key]} {command}"
    where = f"change {key}.listen in {path}, or " if path else ""
    lines.append(f"{where}pick another port: {override}")
    return lines


def _consistency(args: argparse.Namespace) -> int:
    from glb.admin.consistency import InstanceView, disagreements
    from glb.admin.remote import read_instances

    read = asyncio.run(read_instances(args.peers, args.timeout))
    views = [r for r in read if isinstance(r, InstanceView)]
    unreachable = [r for r in read if not isinstance(r, InstanceView)]
    for instance in unreachable:
        print(f"glb: cannot read {instance.url}: {instance.reason}", file=sys.stderr)
    found = disagreements(views)
    for disagreement in found:
        print(disagreement.line())
    if unreachable:
        return EXIT_UNREACHABLE
    if found:
        return EXIT_DISAGREE
    print(
        f"{len(views)} instance(s) agree on {len({n for v in views for n in v.services})} "
        "service(s)"
    )
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    import json

    from glb.config.explain_view import explanation_json, explanation_lines, service_setups
    from glb.core.explain import explain

    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    services = _services_to_explain(settings, args)
    if services is None:
        return EXIT_ERROR
    latencies = None
    if args.admin is not None:
        one = services[0].name if args.service is not None else None
        latencies = _observed_latencies(args.admin, one, args.timeout)
        if latencies is None:
            return EXIT_ERROR
    explanations = [explain(setup) for setup in service_setups(settings, services, latencies)]
    if args.json:
        print(json.dumps(explanation_json(explanations), indent=2))
    elif not explanations:
        print(f"{args.config}: no services")
    else:
        print("\n".join(explanation_lines(explanations)))
    return EXIT_OK


def _services_to_explain(
    settings: Settings, args: argparse.Namespace
) -> list[ServiceSettings] | None:
    """Every service, or the one named (None, said why, when there is no such service)."""
    from glb.config.explain_view import find_service

    if args.service is None:
        return list(settings.services)
    found = find_service(settings, args.service)
    if found is None:
        known = ", ".join(s.name for s in settings.services) or "none"
        print(
            f"glb: no service {args.service!r} in {args.config} (known: {known})", file=sys.stderr
        )
        return None
    return [found]


def _observed_latencies(
    url: str, service: str | None, within: float
) -> dict[str, tuple[tuple[str, float], ...]] | None:
    from glb.admin.observed import LatenciesUnreadable, observed_latencies

    try:
        return asyncio.run(observed_latencies(url, service, within))
    except LatenciesUnreadable as exc:
        print(f"glb: cannot read observed latencies: {exc}", file=sys.stderr)
        return None


def _announce(text: str) -> None:
    print(text, flush=True)


class Signals:
    """What the process has been told: SIGINT/SIGTERM set `stop` (a second one exits at once);
    SIGHUP calls `on_reload` when glb is serving."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.on_reload: Callable[[], Coroutine[Any, Any, list[str]]] | None = None
        self._tasks: set[asyncio.Task[list[str]]] = set()

    def install(self, loop: asyncio.AbstractEventLoop, *, worker: bool = False) -> None:
        if worker:  # the main process stops its workers and reloads them
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            loop.add_signal_handler(signal.SIGTERM, self._stop, signal.SIGTERM)
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def _stop(self, signum: int) -> None:
        if self.stop.is_set():
            print(f"glb: second {signal.Signals(signum).name}: exiting at once", file=sys.stderr)
            os._exit(EXIT_ERROR)
        self.stop.set()

    def _reload(self) -> None:
        if self.on_reload is None:
            print("glb: SIGHUP ignored: not serving yet", file=sys.stderr)
            return
        task = asyncio.get_running_loop().create_task(self.on_reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def run_until_signal(
    start: Callable[[Signals], Coroutine[Any, Any, object]],
    *,
    worker: bool = False,
    advice: Callable[[GLBError], list[str]] = lambda exc: [],
) -> int:
    """Run `start(signals)` on uvloop (when installed) until SIGINT or SIGTERM (a `worker`:
    SIGTERM only). A GLBError is printed, followed by the lines of `advice` for it."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            runner.run(_with_signals(start, worker))
        except GLBError as exc:
            print(f"glb: {exc}", file=sys.stderr)
            for line in advice(exc):
                print(f"glb: {line}", file=sys.stderr)
            return EXIT_ERROR
    return EXIT_OK


async def _with_signals(
    start: Callable[[Signals], Coroutine[Any, Any, object]], worker: bool
) -> None:
    signals = Signals()
    signals.install(asyncio.get_running_loop(), worker=worker)
    await start(signals)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
