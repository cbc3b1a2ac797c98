"""The live status page (`GET /`): glb/admin/static/status.html, served with a
Content-Security-Policy that allows only its own inline code (by hash) and same-origin fetches."""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from typing import Final

from aiohttp import web


@dataclass(frozen=True, slots=True)
class StatusPage:
    """The status page's HTML and the Content-Security-Policy that allows only its own code."""

    html: str
    csp: str

    @classmethod
    def load(cls) -> StatusPage:
        """Read glb/admin/static/status.html from the installed package."""
        html = (importlib.resources.files("glb.admin") / "static" / "status.html").read_text(
            "utf-8"
        )
        return cls(html, _page_csp(html))


STATUS_PAGE: Final = web.AppKey("glb_status_page", StatusPage)


async def status_page(request: web.Request) -> web.Response:
    page = request.app[STATUS_PAGE]
    headers = {"Content-Security-Policy": page.csp}
    return web.Response(text=page.html, content_type="text/html", headers=headers)


def _page_csp(html: str) -> str:
    """Nothing but the page's own inline <script> and <style> (by hash) and same-origin fetches."""
    scripts = _hashes(html, "script")
    styles = _hashes(html, "style")
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _hashes(html: str, tag: str) -> str:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in bodies)
    return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"
