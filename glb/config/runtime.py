"""The options each adapter takes, made from the validated settings: the HTTP client limits, the
DNS rate limiter, what `CH TXT id.server` answers, the probes' and upstreams' extra CA file, the
probes' source address, the proxies whose X-Forwarded-For the HTTP front end believes, its TLS
certificate files and access-log sampling, where the state file lives.

The adapters never see `Settings`: the composition root (`glb.app`) hands each one the plain
options made here, so a setting's meaning is decided in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from glb.config.models import Settings
from glb.core.rrl import RrlConfig
from glb.http1.server import ClientLimits
from glb.http1.server_tls import CertificateFiles


def client_limits(settings: Settings) -> ClientLimits:
    """What one HTTP client may send and how slowly (`http.*`), for the proxy and the admin API."""
    http = settings.http
    return ClientLimits(
        max_request_line=http.max_request_line,
        max_header_size=http.max_header_size,
        max_headers=http.max_headers,
        header_timeout=http.client_header_timeout,
        idle_timeout=http.client_idle_timeout,
        max_connections=http.max_connections,
    )


def rrl_config(settings: Settings) -> RrlConfig | None:
    """Response rate limiting of DNS over UDP (`dns.rrl`); None when it is off."""
    rrl = settings.dns.rrl
    if not rrl.enabled:
        return None
    return RrlConfig(
        rate=rrl.responses_per_second,
        window=rrl.window,
        slip=rrl.slip,
        ipv4_prefix=rrl.ipv4_prefix,
        ipv6_prefix=rrl.ipv6_prefix,
    )


def server_id(settings: Settings, role: str) -> str | None:
    """What CH TXT id.server answers for this process (`dns.server_id`); None: REFUSED."""
    match settings.dns.server_id:
        case "process":
            return f"glb-{os.getpid()} {role}"
        case "none":
            return None
        case text:
            return text


def ca_file(settings: Settings) -> str | None:
    """The PEM file of extra CA certificates for https probes and upstreams (`probes.ca_file`)."""
    path = settings.probes.ca_file
    return str(path) if path else None


def probe_source(settings: Settings) -> str | None:
    """The local address probes connect from (`probes.source`); None: the system's choice."""
    return settings.probes.source


def trusted_proxies(settings: Settings) -> tuple[str, ...]:
    """The prefixes of the proxies whose X-Forwarded-For names the client (`http.trusted_proxies`),
    each a network without host bits set (an address is its /32 or /128)."""
    return tuple(settings.http.trusted_proxies)


def front_certificates(settings: Settings) -> tuple[CertificateFiles, ...]:
    """The HTTP front end's certificate and key files (`http.tls`), the default one first;
    none: plain HTTP."""
    tls = settings.http.tls
    if tls is None:
        return ()
    return tuple(CertificateFiles(str(each.cert), str(each.key)) for each in tls.certificates)


def access_log_sample(settings: Settings) -> float:
    """The share of proxied requests the access log has a line for (`http.access_log`); 0: off."""
    access = settings.http.access_log
    return access.sample if access.enabled else 0.0


STATE_FILE_NAME = "glb-state.json"  # next to the configuration file, by default


def state_path(settings: Settings, config_path: str | Path, environ: Mapping[str, str]) -> Path:
    """Where `glb serve` keeps its durable state (`state.path`): as configured, else
    `$STATE_DIRECTORY/state.json` (systemd's StateDirectory=), else `glb-state.json` in the
    directory of the configuration file."""
    if settings.state.path is not None:
        return settings.state.path
    if directory := environ.get("STATE_DIRECTORY", "").split(":")[0]:
        return Path(directory) / "state.json"
    return Path(config_path).absolute().parent / STATE_FILE_NAME
