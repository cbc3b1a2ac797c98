"""The `geo:` configuration: cluster locations, client networks, the location database and the
default location; every validation error with its key path; the topology they become (cluster
locations on endpoints, the GeoMap); a database replaced by rename read by the next load."""

from __future__ import annotations

import ipaddress
import pickle
import textwrap
from pathlib import Path

import pytest

from glb.config import load_settings, parse_settings, to_topology
from glb.core.geo import GeoMap, Source
from glb.core.model import Location, PolicyName, Topology
from glb.core.snapshot import HealthSnapshot
from glb.errors import ConfigError
from glb.geodb import MmdbDatabase, country_centroid
from glb.workers.protocol import NewTopology, Start, encode
from tests.geo_databases import swap_in, write_asn_db, write_city_db, write_country_db
from tests.test_cli import run_glb
from tests.test_config import assert_reasons, reasons_of

DUBLIN = Location(53.35, -6.26)
NEW_YORK = Location(40.71, -74.01)
SINGAPORE = Location(1.35, 103.82)

BASE = """\
zones:
  - name: glb.example.test
    nameservers: [{name: ns1.glb.example.test, address: 192.0.2.53}]
clusters:
  - {name: eu-west, region: eu-west, location: {lat: 53.35, lon: -6.26}, addresses: [127.0.1.1]}
  - {name: us-east, location: {lat: 40.71, lon: -74.01}, addresses: [127.0.1.2, "::1"]}
  - {name: ap-south, addresses: [127.0.1.3]}
"""
GEO_SERVICE = "- {name: app.glb.example.test, policy: geo, backends: [{cluster: eu-west}]}\n"
# a geo service on the cluster without a location
ON_AP_SOUTH = GEO_SERVICE.replace("eu-west", "ap-south")


def config(geo: str = "", services: str = GEO_SERVICE, base: str = BASE) -> str:
    """BASE, a `geo:` section given as indented YAML (none if empty) and services."""
    text = base + "services:\n" + textwrap.indent(textwrap.dedent(services), "  ")
    return text + ("geo:\n" + textwrap.indent(textwrap.dedent(geo), "  ") if geo else "")


def topology_of(text: str) -> Topology:
    return to_topology(parse_settings(text))


def place(geo: GeoMap, address: str) -> tuple[Location | None, Source]:
    placement = geo.place(ipaddress.ip_address(address))
    return placement.location, placement.source


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    """A City database placing 203.0.113.0/24 in Singapore."""
    return write_city_db(tmp_path / "GeoLite2-City.mmdb", {"203.0.113.0/24": (1.35, 103.82)})


# ---------------------------------------------------------------------------------------------
# The topology


def test_the_documented_geo_configuration_becomes_the_topology(city_db: Path) -> None:
    """The contract's example: networks first (longest prefix wins), then the database, then
    nothing (default_location null); clusters and their endpoints carry their locations."""
    topology = topology_of(
        config(f"""\
            database: {city_db}
            networks:
              - {{prefix: 198.51.100.0/24, location: {{lat: 40.71, lon: -74.01}}}}
              - {{prefix: 198.51.100.128/25, location: {{lat: 53.35, lon: -6.26}}}}
              - {{prefix: "2001:db8:100::/48", location: {{lat: 1.35, lon: 103.82}}}}
            default_location: null
            """)
    )
    assert [c.location for c in topology.clusters] == [DUBLIN, NEW_YORK, None]
    geo = topology.geo
    assert isinstance(geo.database, MmdbDatabase)
    assert geo.database.path == str(city_db)
    assert geo.default is None
    assert len(geo.networks) == 3
    assert place(geo, "198.51.100.7") == (NEW_YORK, Source.NETWORK)
    assert place(geo, "198.51.100.200") == (DUBLIN, Source.NETWORK)
    assert place(geo, "2001:db8:100::1") == (SINGAPORE, Source.NETWORK)
    assert place(geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)
    assert place(geo, "192.0.2.1") == (None, Source.UNKNOWN)
    (service,) = topology.services
    assert service.policy is PolicyName.GEO


def test_endpoints_carry_their_clusters_location() -> None:
    """Every endpoint has its cluster's location; a cluster without one gives None."""
    topology = topology_of(
        config(
            services="- {name: app.glb.example.test, backends: "
            "[{cluster: eu-west}, {cluster: us-east}, {cluster: ap-south}]}\n"
        )
    )
    (service,) = topology.services
    assert [(e.address, e.location) for e in service.endpoints] == [
        ("127.0.1.1", DUBLIN),
        ("127.0.1.2", NEW_YORK),
        ("::1", NEW_YORK),
        ("127.0.1.3", None),
    ]


def test_without_a_geo_section_every_client_is_unknown() -> None:
    """No `geo:` at all: an empty GeoMap (geo services answer in failover order)."""
    geo = topology_of(config()).geo
    assert geo.empty
    assert place(geo, "198.51.100.7") == (None, Source.UNKNOWN)


def test_the_default_location_places_every_client_found_nowhere(city_db: Path) -> None:
    geo = topology_of(
        config(f"database: {city_db}\ndefault_location: {{lat: 53.35, lon: -6.26}}\n")
    ).geo
    assert geo.default == DUBLIN
    assert place(geo, "192.0.2.1") == (DUBLIN, Source.DEFAULT)
    assert place(geo, "2001:db8:ffff::1") == (DUBLIN, Source.DEFAULT)
    assert place(geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)


def test_a_country_database_places_clients_at_their_country_centre(tmp_path: Path) -> None:
    path = write_country_db(tmp_path / "GeoLite2-Country.mmdb", {"203.0.113.0/24": "SG"})
    geo = topology_of(config(f"database: {path}\n")).geo
    assert place(geo, "203.0.113.9") == (country_centroid("SG"), Source.DATABASE)


def test_networks_are_kept_in_canonical_form() -> None:
    """Prefixes are normalised (case, spaces, netmask notation) before they are compared."""
    settings = parse_settings(
        config("""\
            networks:
              - {prefix: " 2001:DB8:100::/48 ", location: {lat: 1.35, lon: 103.82}}
              - {prefix: 198.51.100.0/255.255.255.0, location: {lat: 1, lon: 2}}
              - {prefix: 192.0.2.7, location: {lat: 1, lon: 2}}
            """)
    )
    assert [n.prefix for n in settings.geo.networks] == [
        "2001:db8:100::/48",
        "198.51.100.0/24",
        "192.0.2.7/32",
    ]


def test_the_settings_and_topology_with_their_database_reach_a_worker(city_db: Path) -> None:
    """Sent to a worker process (pickled by the workers' protocol), the database is opened again
    there by its path, once for the settings and the topology, and places alike."""
    settings = parse_settings(config(f"database: {city_db}\n"))
    topology = to_topology(settings)
    start = Start(0, settings, 53, 80, topology, HealthSnapshot())
    received = pickle.loads(encode(start)[4:])  # noqa: S301 (our own frame)
    geo = received.topology.geo
    assert geo.database is not topology.geo.database
    assert geo.database is received.settings.geo.database
    assert geo.database.path == str(city_db)
    assert place(geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)
    again = pickle.loads(encode(NewTopology(topology))[4:])  # noqa: S301 (our own frame)
    assert place(again.topology.geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)


# ---------------------------------------------------------------------------------------------
# A database replaced by rename, read again at the next load (every reload loads anew)


def test_a_replaced_database_is_read_by_the_next_load(tmp_path: Path, city_db: Path) -> None:
    """Reload loads the file and builds a new topology: a database file swapped in by rename
    since the last load is opened again, while the previous topology keeps the old data."""
    path = tmp_path / "glb.yaml"
    path.write_text(config(f"database: {city_db}\n"), encoding="utf-8")
    before = to_topology(load_settings(path))
    assert place(before.geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)
    new = write_city_db(tmp_path / "update.mmdb", {"203.0.113.0/24": (53.35, -6.26)})
    swap_in(new, city_db)
    after = to_topology(load_settings(path))
    assert place(after.geo, "203.0.113.9") == (DUBLIN, Source.DATABASE)
    assert place(before.geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)


def test_a_database_broken_since_the_last_load_fails_the_next_load(
    tmp_path: Path, city_db: Path
) -> None:
    """A junk file swapped in makes the next load (hence the reload) fail, naming the file;
    the topology already built keeps working."""
    path = tmp_path / "glb.yaml"
    path.write_text(config(f"database: {city_db}\n"), encoding="utf-8")
    before = to_topology(load_settings(path))
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database\n" * 100)
    swap_in(junk, city_db)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    (reason,) = caught.value.reasons
    assert reason.startswith(f"{path}:11:13: geo.database: {city_db}: not a MaxMind DB file")
    assert place(before.geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)


# ---------------------------------------------------------------------------------------------
# Validation: every reason, with its key path


def network(prefix: str, location: str = "{lat: 1, lon: 2}") -> str:
    return f"networks:\n  - {{prefix: {prefix!r}, location: {location}}}\n"


@pytest.mark.parametrize(
    ("geo", "expected"),
    [
        (
            network("198.51.100.7/24"),
            ("geo.networks[0].prefix",
             "198.51.100.7/24 has host bits set: the network is 198.51.100.0/24"),
        ),
        (
            network("2001:db8::1/32"),
            ("geo.networks[0].prefix",
             "2001:db8::1/32 has host bits set: the network is 2001:db8::/32"),
        ),
        (
            network("198.51.100.0/33"),
            ("geo.networks[0].prefix", "'198.51.100.0/33' is not an IP network"),
        ),
        (
            network("europe"),
            ("geo.networks[0].prefix", "'europe' is not an IP network"),
        ),
        (
            "networks:\n  - {prefix: 24, location: {lat: 1, lon: 2}}\n",
            ("geo.networks[0].prefix", "24 is not an IP network"),
        ),
        (
            network("::ffff:198.51.100.0/120"),
            ("geo.networks[0].prefix", "is IPv4-mapped: write it as 198.51.100.0/24"),
        ),
        (
            "networks:\n  - {location: {lat: 1, lon: 2}}\n",
            ("geo.networks[0].prefix", "required key is missing"),
        ),
        (
            "networks:\n  - {prefix: 192.0.2.0/24}\n",
            ("geo.networks[0].location", "required key is missing"),
        ),
        (
            network("192.0.2.0/24", "{lat: 90.5, lon: 0}"),
            ("geo.networks[0].location.lat", "it must be at most 90"),
        ),
        (
            network("192.0.2.0/24", "{lat: -90.5, lon: 0}"),
            ("geo.networks[0].location.lat", "it must be at least -90"),
        ),
        (
            network("192.0.2.0/24", "{lat: 0, lon: 180.5}"),
            ("geo.networks[0].location.lon", "it must be at most 180"),
        ),
        (
            network("192.0.2.0/24", "{lat: 0, lon: -181}"),
            ("geo.networks[0].location.lon", "it must be at least -180"),
        ),
        (
            network("192.0.2.0/24", "{lat: .nan, lon: 0}"),
            ("geo.networks[0].location.lat", "a coordinate must be a finite number of degrees"),
        ),
        (
            network("192.0.2.0/24", "{lat: 0, lon: .inf}"),
            ("geo.networks[0].location.lon", "a coordinate must be a finite number of degrees"),
        ),
        (
            network("192.0.2.0/24", "{lat: true, lon: 0}"),
            ("geo.networks[0].location.lat", "True is not a number of degrees"),
        ),
        (
            network("192.0.2.0/24", "{lat: north, lon: 0}"),
            ("geo.networks[0].location.lat", "'north' is not a number of degrees"),
        ),
        (
            network("192.0.2.0/24", "{lat: 0}"),
            ("geo.networks[0].location.lon", "required key is missing"),
        ),
        (
            network("192.0.2.0/24", "{lat: 0, lon: 0, alt: 10}"),
            ("geo.networks[0].location.alt", "unknown key"),
        ),
        (
            "networks:\n  - {prefix: 192.0.2.0/24, location: {lat: 1, lon: 2}, weight: 1}\n",
            ("geo.networks[0].weight", "unknown key"),
        ),
        (
            "networks: 192.0.2.0/24\n",
            ("geo.networks", "expected a list, got text '192.0.2.0/24'"),
        ),
        (
            "default_location: {lat: 0, lon: 200}\n",
            ("geo.default_location.lon", "it must be at most 180"),
        ),
        (
            "default_location: dublin\n",
            ("geo.default_location", "expected a mapping, got text 'dublin'"),
        ),
        (
            "databse: /var/lib/glb/GeoLite2-City.mmdb\n",
            ("geo.databse", "unknown key"),
        ),
        (
            "database: ''\n",
            ("geo.database", "the path of a MaxMind DB file is needed (or null: no database)"),
        ),
        (
            "database: 12\n",
            ("geo.database", "the path of a MaxMind DB file is needed (or null: no database)"),
        ),
        (
            "database: /nonexistent/GeoLite2-City.mmdb\n",
            ("geo.database", "/nonexistent/GeoLite2-City.mmdb: no such file"),
        ),
    ],
    ids=[
        "host-bits-v4", "host-bits-v6", "prefix-too-long", "not-a-network", "number",
        "ipv4-mapped", "no-prefix", "no-location", "lat-over-90", "lat-under-90",
        "lon-over-180", "lon-under-180", "lat-nan", "lon-inf", "lat-boolean", "lat-text",
        "no-lon", "unknown-location-key", "unknown-network-key", "networks-not-a-list",
        "default-out-of-range", "default-not-a-map", "unknown-geo-key", "empty-database",
        "database-not-a-path", "missing-database",
    ],
)  # fmt: skip
def test_geo_error(geo: str, expected: tuple[str, str]) -> None:
    """Each kind of `geo:` error is reported alone, with its key path."""
    assert_reasons(reasons_of(config(geo)), "<config>", [expected])


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (
            BASE.replace("lat: 53.35", "lat: 153.35"),
            ("clusters[0].location.lat", "it must be at most 90"),
        ),
        (
            BASE.replace("location: {lat: 53.35, lon: -6.26}", "location: {lat: 53.35}"),
            ("clusters[0].location.lon", "required key is missing"),
        ),
        (
            BASE.replace("location: {lat: 53.35, lon: -6.26}", "location: [53.35, -6.26]"),
            ("clusters[0].location", "expected a mapping, got a list"),
        ),
    ],
    ids=["lat-out-of-range", "lon-missing", "not-a-map"],
)
def test_cluster_location_error(base: str, expected: tuple[str, str]) -> None:
    assert_reasons(reasons_of(config(base=base)), "<config>", [expected])


def test_a_network_listed_twice_is_reported_at_each_repeat() -> None:
    """The same network twice, however written, is an error at each repeat, naming the first."""
    reasons = reasons_of(
        config("""\
            networks:
              - {prefix: "2001:db8::/32", location: {lat: 1, lon: 2}}
              - {prefix: 198.51.100.0/24, location: {lat: 1, lon: 2}}
              - {prefix: "2001:DB8:0::/32", location: {lat: 3, lon: 4}}
              - {prefix: 198.51.100.0/25, location: {lat: 1, lon: 2}}
              - {prefix: 198.51.100.0/255.255.255.0, location: {lat: 1, lon: 2}}
            """)
    )
    assert reasons == [
        "<config>:14:16: geo.networks[2].prefix: 2001:db8::/32 is listed twice (first at "
        "geo.networks[0].prefix)",
        "<config>:16:16: geo.networks[4].prefix: 198.51.100.0/24 is listed twice (first at "
        "geo.networks[1].prefix)",
    ]


def test_a_geo_service_needs_a_location_on_every_cluster_it_uses() -> None:
    """Each cluster of a geo service without a location is one reason, naming the service,
    the cluster and where the cluster is defined; other policies need no location."""
    reasons = reasons_of(
        config(
            services="""\
            - {name: app.glb.example.test, backends: [{cluster: ap-south}]}
            - name: geo.glb.example.test
              policy: geo
              backends: [{cluster: eu-west}, {cluster: ap-south}, {cluster: us-east}]
            """,
            base=BASE.replace(", location: {lat: 40.71, lon: -74.01}", ""),
        )
    )
    assert reasons == [
        "<config>:10:5: services[1] (geo.glb.example.test): policy geo needs a location on cluster "
        "ap-south (clusters[2])",
        "<config>:10:5: services[1] (geo.glb.example.test): policy geo needs a location on cluster "
        "us-east (clusters[1])",
    ]


def test_a_geo_service_on_an_unknown_cluster_is_reported_once() -> None:
    """An unknown cluster is reported as unknown, not also as lacking a location; a cluster
    listed twice lacks its location once."""
    reasons = reasons_of(
        config(
            services="- {name: app.glb.example.test, policy: geo, backends: "
            "[{cluster: mars}, {cluster: ap-south}, {cluster: ap-south}]}\n"
        )
    )
    assert_reasons(
        reasons,
        "<config>",
        [
            ("services[0].backends[0].cluster", "unknown cluster 'mars'"),
            ("services[0].backends[2].cluster", "cluster 'ap-south' is listed twice"),
            ("services[0] (app.glb.example.test)", "needs a location on cluster ap-south"),
        ],
    )


def test_geo_errors_are_reported_with_field_errors_elsewhere() -> None:
    """A field error in one place hides neither the repeated network nor the missing location
    (the cross-key checks run on the valid parts)."""
    reasons = reasons_of(
        config(
            """\
            networks:
              - {prefix: 192.0.2.0/24, location: {lat: 1, lon: 2}}
              - {prefix: 192.0.2.0/24, location: {lat: 1, lon: 2}}
              - {prefix: 192.0.2.1/24, location: {lat: 1, lon: 2}}
            """,
            services="""\
            - {name: app.glb.example.test, policy: geo, backends: [{cluster: ap-south}]}
            - {name: b.glb.example.test, backends: [{cluster: eu-west}], probe: {rise: 0}}
            """,
        )
    )
    assert_reasons(
        reasons,
        "<config>",
        [
            ("geo.networks[2].prefix", "192.0.2.1/24 has host bits set"),
            ("services[1].probe.rise", "it must be at least 1"),
            ("geo.networks[1].prefix", "192.0.2.0/24 is listed twice"),
            ("services[0] (app.glb.example.test)", "needs a location on cluster ap-south"),
        ],
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        (b"", "not a MaxMind DB file"),
        (b"\x00\x01junk" * 500, "not a MaxMind DB file"),
    ],
    ids=["missing", "empty", "junk"],
)
def test_an_unusable_database_is_reported_with_the_key_and_the_file(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    if content is not None:
        path.write_bytes(content)
    (reason,) = reasons_of(config(f"database: {path}\n"))
    assert reason.startswith(f"<config>:11:13: geo.database: {path}: {problem}")


def test_a_database_without_locations_is_reported(tmp_path: Path) -> None:
    path = write_asn_db(tmp_path / "GeoLite2-ASN.mmdb", {"192.0.2.0/24": 64500})
    assert reasons_of(config(f"database: {path}\n")) == [
        f"<config>:11:13: geo.database: {path}: a GeoLite2-ASN database holds no locations "
        "(use a City or Country database)"
    ]


def test_database_error_is_reported_with_other_errors(tmp_path: Path) -> None:
    """A bad database file does not hide the other problems of the file, nor they it."""
    reasons = reasons_of(
        config(
            f"database: {tmp_path / 'absent.mmdb'}\n",
            services=ON_AP_SOUTH,
        )
    )
    assert_reasons(
        reasons,
        "<config>",
        [
            ("geo.database", "absent.mmdb: no such file"),
            ("services[0] (app.glb.example.test)", "needs a location on cluster ap-south"),
        ],
    )


# ---------------------------------------------------------------------------------------------
# The environment, and the command line


def test_the_environment_sets_the_database(monkeypatch: pytest.MonkeyPatch, city_db: Path) -> None:
    """GLB_GEO__DATABASE names the database file (and wins over the file's)."""
    monkeypatch.setenv("GLB_GEO__DATABASE", str(city_db))
    geo = topology_of(config("database: /nonexistent.mmdb\n")).geo
    assert geo.database is not None
    assert geo.database.path == str(city_db)
    assert place(geo, "203.0.113.9") == (SINGAPORE, Source.DATABASE)


def test_the_environment_sets_the_default_location(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLB_GEO__DEFAULT_LOCATION", '{"lat": 1.35, "lon": 103.82}')
    assert topology_of(config()).geo.default == SINGAPORE


def test_a_bad_database_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GLB_GEO__DATABASE", str(tmp_path / "absent.mmdb"))
    assert reasons_of(config()) == [
        f"environment GLB_GEO__DATABASE: geo.database: {tmp_path / 'absent.mmdb'}: no such file"
    ]


async def test_glb_check_reports_geo_problems(tmp_path: Path, city_db: Path) -> None:
    """`glb check` opens the database: a good geo file is OK (and its geo service summarised),
    a bad one lists its problems with their key paths and exits 2."""
    path = tmp_path / "glb.yaml"
    path.write_text(config(f"database: {city_db}\n"), encoding="utf-8")
    code, out, _ = await run_glb("check", "-c", str(path))
    assert (code, out.splitlines()) == (
        0,
        [
            f"{path}: OK (1 zone(s), 3 cluster(s), 1 service(s))",
            f"geo app.glb.example.test: eu-west (53.35, -6.26); clients placed by GeoLite2-City "
            f"database ({city_db}); others get failover order",
        ],
    )
    path.write_text(
        config(
            f"database: {tmp_path / 'absent.mmdb'}\n",
            services=ON_AP_SOUTH,
        ),
        encoding="utf-8",
    )
    code, _, err = await run_glb("check", "-c", str(path))
    assert code == 2
    assert f"{path}:11:13: geo.database: {tmp_path / 'absent.mmdb'}: no such file" in err
    assert (
        f"{path}:9:5: services[0] (app.glb.example.test): policy geo needs a location on cluster "
        "ap-south (clusters[2])"
    ) in err


def test_the_example_file_shows_the_geo_keys() -> None:
    """config/example.yaml documents the cluster locations and the `geo:` section."""
    topology = to_topology(load_settings(Path(__file__).parents[2] / "config" / "example.yaml"))
    assert [c.location for c in topology.clusters] == [DUBLIN, NEW_YORK]
    assert topology.geo.database is None
    assert place(topology.geo, "198.51.100.7") == (NEW_YORK, Source.NETWORK)
