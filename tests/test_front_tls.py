"""TLS on the HTTP front end (`http.tls`, `glb.http1.server_tls`): a whole glb serving HTTPS
with `trustme` certificates, reached by real TLS clients (Python's ssl, aiohttp): the certificate
chosen by SNI, the default one, TLS 1.1 refused, ALPN, X-Forwarded-Proto, certificates replaced
on disk while serving, and the errors of unusable certificate files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import warnings
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from glb.app import Running, running
from glb.errors import ConfigError, StartupError
from glb.http1.server_tls import CertificateError, CertificateFiles, ServerCertificates
from tests.front_glb import (
    HOST,
    front_config,
    glb_front,
    port_of,
    settings_for,
    two_upstreams,
)
from tests.serve import Served, start_serve, stop_serve
from tests.stack import Upstreams, tcp_connection, upstreams


@dataclass
class Certificates:
    """Certificates of one test CA written to files: `default` (app.glb.test and
    www.example.test), `wildcard` (*.other.test)."""

    ca: trustme.CA
    directory: Path

    def write(self, name: str, *names: str) -> CertificateFiles:
        cert = self.ca.issue_cert(*names)
        files = CertificateFiles(
            str(self.directory / f"{name}.pem"), str(self.directory / f"{name}.key")
        )
        _replace(Path(files.cert), b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        _replace(Path(files.key), cert.private_key_pem.bytes())
        return files

    def client(self, **options: Any) -> ssl.SSLContext:
        """A client context trusting the CA, checking no host name (the tests read the names)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        context.check_hostname = False
        context.set_alpn_protocols(["http/1.1"])
        for name, value in options.items():
            setattr(context, name, value)
        return context


def _replace(path: Path, data: bytes) -> None:
    """Write `path` as certbot does: a new file renamed over the old one."""
    partial = path.with_suffix(path.suffix + ".new")
    partial.write_bytes(data)
    os.replace(partial, path)


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(trustme.CA(), tmp_path)


def tls_yaml(*files: CertificateFiles) -> str:
    items = ", ".join(f"{{cert: {f.cert}, key: {f.key}}}" for f in files)
    return f"tls: {{certificates: [{items}]}}"


def tls_front(*files: CertificateFiles) -> AbstractAsyncContextManager[tuple[Running, Upstreams]]:
    """A serving glb with TLS by `files` in front of two echoing upstreams."""
    return glb_front(tls_yaml(*files))


@dataclass(frozen=True)
class Handshake:
    names: tuple[str, ...]  # the DNS names of the certificate served
    serial: str
    alpn: str | None
    version: str | None


async def handshake(glb: Running, context: ssl.SSLContext, sni: str | None) -> Handshake:
    """A TLS handshake with glb's front end asking for `sni` (None: no SNI)."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port_of(glb), ssl=context, server_hostname=sni
    )
    try:
        tls = writer.get_extra_info("ssl_object")
        peer = tls.getpeercert()
        names = tuple(value for kind, value in peer["subjectAltName"] if kind == "DNS")
        return Handshake(names, peer["serialNumber"], tls.selected_alpn_protocol(), tls.version())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def until_served(
    glb: Running, client: ssl.SSLContext, done: Callable[[Handshake], bool], within: float = 10
) -> Handshake:
    """Handshake every 100 ms until what is served is `done`; TimeoutError after `within` s."""
    async with asyncio.timeout(within):
        while True:
            served = await handshake(glb, client, HOST)
            if done(served):
                return served
            await asyncio.sleep(0.1)


async def test_the_certificate_is_chosen_by_sni_and_the_first_is_the_default(certs):
    """Exact SAN names and a one-label wildcard pick their certificate; no SNI, an unknown name
    and a name two labels under the wildcard get the first certificate."""
    default = certs.write("default", HOST, "www.example.test")
    wildcard = certs.write("wildcard", "*.other.test")
    client = certs.client()
    async with tls_front(default, wildcard) as (glb, _):
        assert (await handshake(glb, client, HOST)).names == (HOST, "www.example.test")
        assert (await handshake(glb, client, "WWW.Example.Test")).names[0] == HOST
        assert (await handshake(glb, client, "a.other.test")).names == ("*.other.test",)
        assert (await handshake(glb, client, None)).names[0] == HOST
        assert (await handshake(glb, client, "unknown.test")).names[0] == HOST
        assert (await handshake(glb, client, "a.b.other.test")).names[0] == HOST
        assert (await handshake(glb, client, "other.test")).names[0] == HOST


def tls11(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context` limited to TLS 1.0 and 1.1, at the security level that still allows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def tls11_works(certs: Certificates, files: CertificateFiles, client: ssl.SSLContext) -> bool:
    """Whether `client` completes a TLS 1.1 handshake with a server made to accept TLS 1.1."""
    server_side = tls11(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server_side.load_cert_chain(files.cert, files.key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=server_side)
    try:
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=HOST
        )
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        return bool(version == "TLSv1.1")
    finally:
        server.close()


async def test_tls_12_and_13_with_alpn_http11_and_tls_11_refused(certs, caplog):
    """TLS 1.3 and 1.2 are served with ALPN http/1.1; a client offering at most TLS 1.1 (which
    it could speak, its security level lowered) is refused in the handshake, and so is plain
    HTTP on the TLS port, neither with a warning or an error in glb's log."""
    files = certs.write("default", HOST)
    caplog.set_level(logging.DEBUG)
    async with tls_front(files) as (glb, _):
        modern = await handshake(glb, certs.client(), HOST)
        assert (modern.version, modern.alpn) == ("TLSv1.3", "http/1.1")
        tls12 = certs.client(maximum_version=ssl.TLSVersion.TLSv1_2)
        assert (await handshake(glb, tls12, HOST)).version == "TLSv1.2"
        old = tls11(certs.client())
        assert await tls11_works(certs, files, old)  # the client can speak it, to a server that can
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # an alert, or the reset after it
            await handshake(glb, old, HOST)
        async with tcp_connection("127.0.0.1", port_of(glb)) as (reader, writer):
            writer.write(b"GET / HTTP/1.1\r\nHost: app.glb.test\r\n\r\n")
            assert not (await reader.read(1024)).startswith(b"HTTP/")  # no plain answer
        after = await handshake(glb, certs.client(), HOST)  # still serving after the refusals
        assert after.alpn == "http/1.1"
    assert [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "glb.admin.api"
    ] == []


async def test_a_client_silent_in_the_handshake_is_cut_after_the_header_timeout(certs):
    """The TLS handshake is bounded by `http.client_header_timeout` (slowloris before TLS)."""
    files = certs.write("default", HOST)
    http = f"client_header_timeout: 0.3s\n{tls_yaml(files)}"
    loop = asyncio.get_running_loop()
    async with (
        glb_front(http) as (glb, _),
        tcp_connection("127.0.0.1", port_of(glb)) as (reader, _writer),
    ):
        opened = loop.time()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by glb, unanswered
        assert loop.time() - opened >= 0.25


async def test_a_request_proxied_over_tls_says_https_upstream(certs):
    """A request over TLS is proxied (to the upstream in plain HTTP) with X-Forwarded-Proto
    https; the Running's URL is https."""
    files = certs.write("default", HOST)
    async with tls_front(files) as (glb, _), aiohttp.ClientSession() as session:
        assert glb.http_url.startswith("https://")
        async with session.get(
            f"{glb.http_url}/over-tls",
            ssl=certs.client(),
            server_hostname=HOST,
            headers={"Host": HOST},
        ) as response:
            assert response.status == 200
            seen = await response.json()
    headers = dict(seen["headers"])
    assert seen["cluster"] == "primary"
    assert seen["target"] == "/over-tls"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == HOST


async def test_a_certificate_replaced_on_disk_is_served_to_new_connections(certs):
    """certbot-style renewal (new files renamed over the old ones): new connections get the new
    certificate within a few seconds, without a restart; the listener stays the same."""
    files = certs.write("default", HOST)
    client = certs.client()
    async with tls_front(files) as (glb, _):
        before = await handshake(glb, client, HOST)
        renewed = certs.write("default", HOST, "renewed.glb.test")
        assert renewed == files
        after = await until_served(glb, client, lambda served: served.serial != before.serial)
        assert after.names == (HOST, "renewed.glb.test")


async def test_a_broken_replacement_is_logged_and_the_old_certificate_kept(certs, caplog):
    """A certificate file replaced by garbage is logged (naming the file) once, and the
    certificate loaded before goes on being served; a good file after it is taken."""
    files = certs.write("default", HOST)
    client = certs.client()
    caplog.set_level(logging.INFO, logger="glb.http1.server_tls")
    async with tls_front(files) as (glb, _):
        before = await handshake(glb, client, HOST)
        _replace(Path(files.cert), b"-----BEGIN CERTIFICATE-----\nnot base64\n")

        def rejected() -> list[logging.LogRecord]:
            return [r for r in caplog.records if getattr(r, "result", "") == "error"]

        def kept(served: Handshake) -> bool:
            assert served.serial == before.serial  # every connection meanwhile: the old one
            return bool(rejected())

        await until_served(glb, client, kept)
        (record,) = rejected()
        assert record.levelno == logging.ERROR
        assert files.cert in record.getMessage()
        assert "keeping" in record.getMessage()
        assert record.exc_info is None  # a clear line, no traceback
        assert (await handshake(glb, client, HOST)).serial == before.serial
        certs.write("default", HOST, "fixed.glb.test")
        await until_served(glb, client, lambda served: served.names == (HOST, "fixed.glb.test"))
        assert len(rejected()) == 1  # the bad file was reported once, not per connection


async def test_a_configuration_reload_reads_the_certificates_again(certs):
    """A reload reads every certificate file again at once (no waiting for the next look)."""
    files = certs.write("default", HOST)
    client = certs.client()
    async with tls_front(files) as (glb, _):
        await handshake(glb, client, HOST)
        certs.write("default", HOST, "reloaded.glb.test")
        assert await glb.reload() == []
        assert (await handshake(glb, client, HOST)).names == (HOST, "reloaded.glb.test")


async def _config_error(where: Upstreams, files: CertificateFiles) -> str:
    with pytest.raises(ConfigError) as raised:
        settings_for(where, tls_yaml(files))
    return str(raised.value)


async def test_missing_or_bad_certificate_files_are_config_errors_naming_the_file(certs, tmp_path):
    good = certs.write("good", HOST)
    other = certs.write("other", "other.test")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    async with upstreams(two_upstreams()) as where:
        missing = await _config_error(where, CertificateFiles(str(tmp_path / "nope.pem"), good.key))
        assert "http.tls.certificates" in missing
        assert "nope.pem" in missing
        bad = await _config_error(where, CertificateFiles(str(garbage), good.key))
        assert "http.tls.certificates" in bad
        assert str(garbage) in bad
        assert "not a PEM certificate" in bad
        bad_key = await _config_error(where, CertificateFiles(good.cert, str(garbage)))
        assert f"{garbage}: not a usable PEM private key" in bad_key
        mismatch = await _config_error(where, CertificateFiles(good.cert, other.key))
        assert good.cert in mismatch
        assert "does not match the key" in mismatch
        assert other.key in mismatch


async def test_a_certificate_broken_after_validation_is_a_startup_error(certs):
    """Files that went bad between loading the configuration and starting: glb does not start,
    and says which file."""
    files = certs.write("default", HOST)
    async with upstreams(two_upstreams()) as where:
        settings = settings_for(where, tls_yaml(files))
        _replace(Path(files.key), b"not a key\n")
        with pytest.raises(StartupError, match=r"^http\.tls: ") as raised:
            async with running(settings):
                pass
    assert f"{files.key}: not a usable PEM private key" in str(raised.value)


def test_certificates_without_any_file_loadable_raise_naming_the_file(tmp_path):
    with pytest.raises(CertificateError) as raised:
        ServerCertificates([CertificateFiles(str(tmp_path / "a.pem"), str(tmp_path / "a.key"))])
    assert raised.value.path == str(tmp_path / "a.pem")
    assert "no such file" in str(raised.value)


def access_lines(served: Served, text: str) -> int:
    return sum(text in line and "glb.access" in line for line in served.lines)


async def test_glb_serve_with_workers_serves_tls_from_every_process(certs, tmp_path):
    """`glb serve --workers 2` (a real process, on uvloop when installed): connections spread
    over the main and the worker by SO_REUSEPORT all get the certificate and are proxied with
    X-Forwarded-Proto https, each with an access-log line."""
    files = certs.write("default", HOST)
    requests = 20
    async with upstreams(two_upstreams()) as where:
        path = tmp_path / "glb.yaml"
        path.write_text(front_config(where, tls_yaml(files)))
        served = await start_serve(path, "--workers", "2")
        try:
            await served.wait_for_line(r"worker 1 \(pid \d+\) serving")
            assert served.http.startswith("https://")
            async with aiohttp.ClientSession() as session:
                for _ in range(requests):  # a new connection each: the session is not kept
                    async with session.get(
                        f"{served.http}/w",
                        ssl=certs.client(),
                        server_hostname=HOST,
                        headers={"Host": HOST, "Connection": "close"},
                    ) as response:
                        seen = await response.json()
                    assert dict(seen["headers"])["X-Forwarded-Proto"] == "https"
            async with asyncio.timeout(10):
                while access_lines(served, '"GET /w HTTP/1.1" 200 ') < requests:
                    served.logged.clear()
                    await served.logged.wait()
        finally:
            assert await stop_serve(served) == 0
