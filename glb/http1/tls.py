"""The TLS client contexts of glb's HTTP/1.1 clients (the proxy's upstream client and the health
probes): one verifying certificates and host names against the system CAs plus an optional
`ca_file` (PEM), one verifying nothing (what `tls_verify: false` asks for); both offer ALPN
`http/1.1`. Built once per owner and shared by all its connections: a context is costly to make
and holds the CA store.
"""

from __future__ import annotations

import ssl


def _verifying(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifies the peer's certificate and name: system CAs, plus those in `ca_file`."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _unverifying() -> ssl.SSLContext:
    """Accepts any certificate for any name (still encrypts)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # tls_verify: false asks for exactly this
    context.set_alpn_protocols(["http/1.1"])
    return context


class ClientContexts:
    """The two client contexts one owner shares. Raises OSError or ssl.SSLError when `ca_file`
    cannot be loaded."""

    def __init__(self, ca_file: str | None = None) -> None:
        self.verified = _verifying(ca_file)
        self.unverified = _unverifying()

    def context(self, verify: bool) -> ssl.SSLContext:
        """The verifying context, or (`verify` False) the one that verifies nothing."""
        return self.verified if verify else self.unverified
