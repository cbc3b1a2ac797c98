"""What `glb check` says of each geo service: its clusters' locations and what places its
clients, one line per service after the OK line (`glb.config.geo_summaries`)."""

from __future__ import annotations

from pathlib import Path

from glb.config import geo_summaries, parse_settings
from tests.geo_databases import write_city_db
from tests.test_cli import run_glb

BASE = """\
zones: [{name: glb.example.test, nameservers: [{name: ns1.glb.example.test, address: 192.0.2.53}]}]
clusters:
  - {name: eu-west, location: {lat: 53.35, lon: -6.26}, addresses: [127.0.1.1]}
  - {name: us-east, location: {lat: 38.95, lon: -77.45}, addresses: [127.0.1.2, "::1"]}
  - {name: ap-southeast, location: {lat: 1.35, lon: 103.82}, addresses: [127.0.1.3]}
  - {name: nowhere, addresses: [127.0.1.4]}
services:
  - name: app.glb.example.test
    policy: geo
    backends: [{cluster: eu-west}, {cluster: us-east}, {cluster: ap-southeast}]
  - {name: plain.glb.example.test, backends: [{cluster: nowhere}, {cluster: eu-west}]}
  - {name: api.glb.example.test, policy: geo, backends: [{cluster: us-east}]}
"""
APP = (
    "geo app.glb.example.test: "
    "eu-west (53.35, -6.26), us-east (38.95, -77.45), ap-southeast (1.35, 103.82)"
)
API = "geo api.glb.example.test: us-east (38.95, -77.45)"
NETWORKS = """\
  networks:
    - {prefix: 198.51.100.0/24, location: {lat: 48.85, lon: 2.35}}
    - {prefix: 192.0.2.0/24, location: {lat: 41.88, lon: -87.63}}
    - {prefix: "2001:db8:100::/48", location: {lat: -33.87, lon: 151.21}}
"""


def summaries(geo: str = "") -> list[str]:
    return geo_summaries(parse_settings(BASE + ("geo:\n" + geo if geo else "")))


def city_db(tmp_path: Path) -> Path:
    return write_city_db(tmp_path / "GeoLite2-City.mmdb", {"203.0.113.0/24": (35.68, 139.69)})


def test_every_source_in_the_order_clients_are_placed_by(tmp_path: Path) -> None:
    """Networks, then the database (its type and path), then the default location."""
    db = city_db(tmp_path)
    lines = summaries(f"{NETWORKS}  database: {db}\n  default_location: {{lat: 0, lon: 0}}\n")
    placed = f"clients placed by 3 networks + GeoLite2-City database ({db}) + default (0, 0)"
    assert lines == [f"{APP}; {placed}", f"{API}; {placed}"]


def test_without_a_default_the_others_get_failover_order(tmp_path: Path) -> None:
    db = city_db(tmp_path)
    (line, _) = summaries(f"  database: {db}\n")
    placed = f"clients placed by GeoLite2-City database ({db}); others get failover order"
    assert line == f"{APP}; {placed}"


def test_one_network_and_a_default() -> None:
    one = "  networks: [{prefix: 192.0.2.0/24, location: {lat: 1.5, lon: -2.25}}]\n"
    (line, _) = summaries(one + "  default_location: {lat: 53.35, lon: -6.26}\n")
    assert line == f"{APP}; clients placed by 1 network + default (53.35, -6.26)"


def test_nothing_places_clients() -> None:
    """No geo section: every client is unknown; the line says so."""
    (line, _) = summaries()
    nothing = "no client is placed (no geo networks, database or default): failover order for all"
    assert line == f"{APP}; {nothing}"


def test_no_geo_service_no_line() -> None:
    settings = parse_settings(BASE.replace("policy: geo", "policy: failover"))
    assert geo_summaries(settings) == []


async def test_glb_check_prints_a_line_per_geo_service(tmp_path: Path) -> None:
    """`glb check`, a real process: the OK line, then one line per geo service, nothing else."""
    db = city_db(tmp_path)
    path = tmp_path / "glb.yaml"
    path.write_text(BASE + f"geo:\n{NETWORKS}  database: {db}\n")
    code, out, err = await run_glb("check", "-c", str(path))
    assert (code, err) == (0, "")
    placed = (
        f"clients placed by 3 networks + GeoLite2-City database ({db}); others get failover order"
    )
    assert out.splitlines() == [
        f"{path}: OK (1 zone(s), 4 cluster(s), 3 service(s))",
        f"{APP}; {placed}",
        f"{API}; {placed}",
    ]
