"""TLS of glb's HTTP front end (`http.tls`): `ServerCertificates` holds one server context per
configured certificate and picks one per connection by the name the client asks for (SNI).

- Names: each certificate serves the DNS names of its subjectAltName; `*.example.test` serves
  one label below `example.test` (not `example.test` itself, not `a.b.example.test`). An exact
  name wins over a wildcard; between certificates naming the same name, the first configured
  wins. A client without SNI, or asking for a name no certificate has, gets the first one.
- Protocol: TLS 1.2 and 1.3 only; the TLS 1.2 ciphers are Mozilla's "intermediate" list
  (forward secret AEAD suites), the TLS 1.3 ones OpenSSL's defaults; ALPN offers `http/1.1`.
- Reloading: `refresh()` looks at every certificate's and key's file (mtime, size, inode) and
  loads again those that changed; a new connection's handshake calls it, at most once per
  `CHECK_EVERY` seconds, so a renewed certificate (certbot, cert-manager) is served without a
  restart; `refresh(force=True)` reloads every file (a configuration reload). A replacement that
  does not load (half-written, key not matching) is logged once and the previous certificate is
  kept.

The listening socket keeps one context (`listening`) for its whole life; its `sni_callback`
switches each connection to the current context of the certificate chosen, so a reloaded
certificate needs no new listener.
"""

from __future__ import annotations

import _ssl
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CHECK_EVERY",
    "CertificateError",
    "CertificateFiles",
    "ServerCertificates",
    "certificate_names",
    "load_certificate",
    "server_context",
]

logger = logging.getLogger(__name__)

CHECK_EVERY: Final = 1.0  # seconds between two looks at the certificate files
# Mozilla's "intermediate" configuration (v5.7) for TLS 1.2; TLS 1.3 suites are OpenSSL's.
INTERMEDIATE_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
ALPN: Final = ("http/1.1",)

Signature = tuple[int, int, int]  # mtime (ns), size, inode


class CertificateError(Exception):
    """A certificate or key file that cannot be served: the file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A PEM certificate chain (the certificate first) and its private key."""

    cert: str
    key: str


def server_context(files: CertificateFiles) -> ssl.SSLContext:
    """A server context serving `files`; raises CertificateError naming the file at fault."""
    return load_certificate(files)[0]


def load_certificate(files: CertificateFiles) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """A server context serving `files`, and the names it serves (`certificate_names`); raises
    CertificateError naming the file at fault: missing, not a certificate, not a private key,
    or a key that does not match the certificate."""
    for path in (files.cert, files.key):
        if not os.path.isfile(path):
            raise CertificateError(path, "no such file")
    names = certificate_names(files.cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(INTERMEDIATE_CIPHERS)
    context.set_alpn_protocols(list(ALPN))
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(files.cert, files.key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in reason:
            raise CertificateError(files.cert, f"does not match the key in {files.key}") from None
        raise CertificateError(files.key, f"not a usable PEM private key ({reason})") from None
    except OSError as exc:
        raise CertificateError(files.cert, exc.strerror or str(exc)) from None
    return context, names


def certificate_names(path: str) -> tuple[str, ...]:
    """The DNS names of the subjectAltName of the first certificate in the PEM file `path`,
    lowercased. Raises CertificateError when it cannot be read."""
    try:
        # CPython's own certificate decoder (the one behind getpeercert()), for a file
        decoded = _ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise CertificateError(path, f"not a PEM certificate ({reason})") from None
    names = (value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS")
    return tuple(name.lower().rstrip(".") for name in names)


def _signature(path: str) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class _Served:
    """One configured certificate as served now, and the files it was loaded from."""

    def __init__(self, files: CertificateFiles) -> None:
        self.files = files
        self.signature = self._look()
        self.context, self.names = load_certificate(files)
        self.rejected: tuple[Signature | None, Signature | None] | None = None

    def _look(self) -> tuple[Signature | None, Signature | None]:
        return _signature(self.files.cert), _signature(self.files.key)

    def reload(self, force: bool) -> bool:
        """Load the files again if they changed (or `force`); True when something new is served."""
        seen = self._look()
        if not force and (seen == self.signature or seen == self.rejected):
            return False
        try:
            context, names = load_certificate(self.files)
        except CertificateError as exc:
            self.rejected = seen
            logger.error(
                "http.tls: keeping the certificate served so far: %s",
                exc,
                extra={"event": "tls_reload", "result": "error", "path": exc.path},
            )
            return False
        self.signature, self.rejected = seen, None
        self.context, self.names = context, names
        logger.info(
            "http.tls: certificate %s reloaded (%s)",
            self.files.cert,
            ", ".join(names) or "no DNS names",
            extra={"event": "tls_reload", "result": "success", "path": self.files.cert},
        )
        return True


class ServerCertificates:
    """The front end's certificates, chosen per connection by SNI, reloaded when their files
    change. Raises CertificateError at construction when one cannot be loaded."""

    def __init__(
        self, files: Sequence[CertificateFiles], clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not files:
            raise ValueError("at least one certificate is needed")
        self._served = [_Served(each) for each in files]
        self._clock = clock
        self._checked = clock()
        self._exact: dict[str, _Served] = {}
        self._wildcard: dict[str, _Served] = {}  # by the parent of `*.parent`
        self._index()
        self.listening = server_context(files[0])
        self.listening.sni_callback = self._select

    def _index(self) -> None:
        exact: dict[str, _Served] = {}
        wildcard: dict[str, _Served] = {}
        for served in self._served:
            for name in served.names:
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], served)
                else:
                    exact.setdefault(name, served)
        self._exact, self._wildcard = exact, wildcard

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """The context serving `server_name` (None: no SNI): by exact name, then by wildcard,
        else the first certificate's."""
        if server_name:
            name = server_name.lower().rstrip(".")
            served = self._exact.get(name)
            if served is None:
                parent = name.partition(".")[2]
                served = self._wildcard.get(parent) if parent else None
            if served is not None:
                return served.context
        return self._served[0].context

    def refresh(self, force: bool = False) -> None:
        """Reload the certificates whose files changed (all of them with `force`)."""
        self._checked = self._clock()
        if any([served.reload(force) for served in self._served]):
            self._index()

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """The SNI callback (also called for a client sending no name)."""
        if self._clock() - self._checked >= CHECK_EVERY:
            self.refresh()
        connection.context = self.context_for(server_name)
