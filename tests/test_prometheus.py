"""The Prometheus side of observability: the example config, the alert rules and their unit
tests, and the Grafana dashboard are checked with promtool; a real Prometheus server scrapes a
running glb and sees a killed cluster go down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from yarl import URL

from glb.app import Running, running
from glb.config import load_settings
from tests.clusters import ClusterProcess
from tests.processes import terminate
from tests.test_metrics import SERVICE, WIDE, Scrape, needs, run, scrape, write_config

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "glb-dashboard.json"
ALERTS = {
    "GlbClusterDown",
    "GlbEndpointDown",
    "GlbServiceFailingOpen",
    "GlbServiceAllEndpointsDown",
    "GlbProbeLatencyHigh",
    "GlbConfigReloadFailing",
    "GlbScrapeMissing",
    "GlbDrainWithoutEnd",
    "GlbFailoverExposureHigh",
    "GlbProxy502RateHigh",
    "GlbProxy5xxRateHigh",
    "GlbDnsServfailRateHigh",
    "GlbWorkersMissing",
}
# Grafana's variables, replaced by concrete values before promtool sees an expression
GRAFANA_VARIABLES = {
    "instance": "127.0.0.1:9100",
    "service": SERVICE,
    "cluster": "eu-west",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


@pytest.fixture
async def glb(tmp_path: Path, clusters: list[ClusterProcess]) -> AsyncIterator[Running]:
    async with running(load_settings(write_config(tmp_path, clusters, clusters[0].port))) as glb:
        yield glb


async def test_example_prometheus_config_is_valid():
    """`promtool check config` accepts the example config and the rule file it loads."""
    status, output = await run(
        needs("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")
    )
    assert status == 0, output
    assert "1 rule files found" in output


async def test_alert_rules_are_valid():
    """`promtool check rules` accepts the alert rules, which define every documented alert."""
    rules = PROMETHEUS_DIR / "glb-alerts.yml"
    status, output = await run(needs("promtool"), "check", "rules", str(rules))
    assert status == 0, output
    alerts = [
        rule["alert"]
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
    ]
    assert sorted(alerts) == sorted(ALERTS)


async def test_alert_rule_unit_tests_pass():
    """`promtool test rules`: each alert fires on its synthetic series and stays quiet otherwise."""
    tests = PROMETHEUS_DIR / "glb-alerts.test.yml"
    status, output = await run(needs("promtool"), "test", "rules", str(tests))
    assert status == 0, output
    tested = {
        case["alertname"]
        for test in yaml.safe_load(tests.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert tested == ALERTS


def free_loopback_port() -> int:
    """A port that was free a moment ago. Racy (another process may take it before Prometheus
    binds it); acceptable only because Prometheus cannot be handed a pre-bound socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, target: str) -> AsyncIterator[str]:
    """A real Prometheus scraping `target` (host:port) every second with glb's alert rules; its
    URL once ready. Always terminated on exit."""
    binary = needs("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(PROMETHEUS_DIR / "glb-alerts.yml")],
                "scrape_configs": [{"job_name": "glb", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    url = f"http://127.0.0.1:{free_loopback_port()}"
    log = tmp_path / "prometheus.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            stdout=output,
            stderr=output,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await poll(session, f"{url}/-/ready", lambda _: True, within=15, log=log)
        yield url
    finally:
        await terminate(process)


async def poll(
    session: aiohttp.ClientSession, url: str, done: Any, *, within: float, log: Path | None = None
) -> Any:
    """GET `url` every 200 ms until it answers 200 with a body for which `done(body)` is true
    (JSON `data`, or the text); fail with the last answer (and Prometheus' log) after `within`."""
    last: object = None
    try:
        async with asyncio.timeout(within):
            while True:  # polling an external system, bounded by the deadline
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(url) as response:
                        body = await response.text()
                        last = (response.status, body)
                        if response.status == 200:
                            data = json.loads(body)["data"] if url.count("/api/") else body
                            if done(data):
                                return data
                await asyncio.sleep(0.2)
    except TimeoutError:
        details = await asyncio.to_thread(log.read_text, errors="replace") if log else ""
        details = details[-3000:]
        pytest.fail(f"{url}: no good answer within {within}s; last {last!r}\n{details}")


def instant(url: str, query: str) -> str:
    return str(URL(f"{url}/api/v1/query").with_query(query=query))


def values(data: Any) -> list[str]:
    return [result["value"][1] for result in data["result"]]


async def test_prometheus_sees_a_killed_cluster_go_down(tmp_path, glb, clusters):
    """A real Prometheus scraping glb sees glb_endpoint_up of a killed cluster go 1 -> 0 and
    GlbClusterDown (warning) and GlbEndpointDown (info, the per-endpoint detail) become
    pending."""
    eu_up = f'glb_endpoint_up{{service="{SERVICE}",cluster="eu-west"}}'
    target = glb.admin_url.removeprefix("http://")
    async with prometheus(tmp_path, target) as url, aiohttp.ClientSession() as session:
        await poll(session, instant(url, eu_up), lambda data: values(data) == ["1"], within=10)
        await poll(
            session, instant(url, 'up{job="glb"}'), lambda data: values(data) == ["1"], within=5
        )
        await clusters[0].kill()
        await poll(session, instant(url, eu_up), lambda data: values(data) == ["0"], within=10)
        alerts = await poll(session, f"{url}/api/v1/alerts", has_eu_west_down_alerts, within=10)
    (cluster,) = [a for a in alerts["alerts"] if is_down(a, "GlbClusterDown", "eu-west")]
    assert cluster["state"] == "pending"  # `for: 30s` has not passed yet
    assert cluster["labels"]["severity"] == "warning"
    (alert,) = [a for a in alerts["alerts"] if is_down(a, "GlbEndpointDown", "eu-west")]
    assert alert["state"] == "pending"
    assert alert["labels"]["severity"] == "info"


def is_down(alert: Any, name: str, cluster: str) -> bool:
    labels = alert["labels"]
    return bool(labels["alertname"] == name and labels.get("cluster") == cluster)


def has_eu_west_down_alerts(data: Any) -> bool:
    return all(
        any(is_down(alert, name, "eu-west") for alert in data["alerts"])
        for name in ("GlbClusterDown", "GlbEndpointDown")
    )


async def test_prometheus_sees_a_service_failing_open_and_a_whole_cluster_down(tmp_path, glb):
    """Every address of WIDE (cluster "wide", 40 addresses) refuses: a real Prometheus has
    GlbServiceFailingOpen (critical) pending for it, and no GlbServiceAllEndpointsDown, and one
    GlbClusterDown for the cluster listing 20 of its endpoints, then "and more"."""
    target = glb.admin_url.removeprefix("http://")
    async with prometheus(tmp_path, target) as url, aiohttp.ClientSession() as session:
        alerts = await poll(session, f"{url}/api/v1/alerts", wide_is_down, within=15)
    (failing,) = [a for a in alerts["alerts"] if is_for(a, "GlbServiceFailingOpen", WIDE)]
    assert (failing["state"], failing["labels"]["severity"]) == ("pending", "critical")
    assert not [a for a in alerts["alerts"] if is_for(a, "GlbServiceAllEndpointsDown", WIDE)]
    (cluster,) = [a for a in alerts["alerts"] if is_down(a, "GlbClusterDown", "wide")]
    description = cluster["annotations"]["description"]
    assert description.startswith("40 endpoint(s) of cluster wide have been down or ejected")
    assert description.count(f"{WIDE} ") == 20
    assert description.endswith(", and more. DNS answers and the proxy steer around them.")


def is_for(alert: Any, name: str, service: str) -> bool:
    labels = alert["labels"]
    return bool(labels["alertname"] == name and labels.get("service") == service)


def wide_is_down(data: Any) -> bool:
    """GlbServiceFailingOpen for WIDE and GlbClusterDown for all 40 endpoints of "wide"."""
    alerts = data["alerts"]
    return any(is_for(a, "GlbServiceFailingOpen", WIDE) for a in alerts) and any(
        is_down(a, "GlbClusterDown", "wide") and a["annotations"]["description"].startswith("40 ")
        for a in alerts
    )


async def test_dashboard_stat_panels_show_one_value_per_instance(tmp_path, glb):
    """Queried on a real Prometheus scraping glb, with $instance All (.*), every stat panel
    answers one value for the one glb instance, labelled with it."""
    target = glb.admin_url.removeprefix("http://")
    dashboard = json.loads(DASHBOARD.read_text())
    stats = [
        concrete(t["expr"], instance=".*")
        for p in panels(dashboard)
        if p["type"] == "stat"
        for t in p["targets"]
    ]
    async with prometheus(tmp_path, target) as url, aiohttp.ClientSession() as session:
        for expr in stats:
            data = await poll(session, instant(url, expr), has_results, within=10)
            assert [r["metric"].get("instance") for r in data["result"]] == [target], expr


def has_results(data: Any) -> bool:
    return bool(data["result"])


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets, and the selectors of query variables."""
    found = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
            assert selector is not None, variable["definition"]
            found.append(selector.group(1))
    return found


def concrete(expr: str, **values: str) -> str:
    """`expr` with Grafana's $variables (and ${variables}) replaced by concrete values: `values`,
    else GRAFANA_VARIABLES."""
    chosen = GRAFANA_VARIABLES | values
    replaced = re.sub(r"\$\{?(\w+)\}?", lambda m: chosen[m.group(1)], expr)
    assert "$" not in replaced, replaced
    return replaced


def exported_names(scraped: Scrape) -> set[str]:
    """Every series name the exposition can contain, sampled yet or not."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        family.name + suffix
        for family in scraped.families
        for suffix in suffixes.get(family.type, [""])
    }


async def test_dashboard_queries_parse_and_use_only_exported_metrics(tmp_path, glb):
    """Every dashboard expression parses (promtool) and names only metrics glb exports."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [concrete(expr) for expr in expressions(dashboard)]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    status, output = await run(needs("promtool"), "check", "rules", str(path))
    assert status == 0, output
    used = {name for expr in exprs for name in re.findall(r"\bglb_\w+", expr)}
    assert used <= exported_names(await scrape(glb))
    assert {
        "glb_endpoint_up",
        "glb_endpoint_latency_seconds",
        "glb_dns_answers_total",
        "glb_dns_queries_total",
        "glb_proxy_requests_total",
        "glb_proxy_request_duration_seconds_bucket",
        "glb_failover_exposure_seconds_bucket",
        "glb_failover_detection_seconds_bucket",
        "glb_service_failing_open",
        "glb_workers",
        "glb_workers_configured",
    } <= used


def test_dashboard_is_importable_with_a_datasource_input():
    """The dashboard takes its datasource from ${DS_PROMETHEUS} and offers instance (several,
    or all), service and cluster."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert {"instance", "service", "cluster"} <= variables.keys()
    instance = variables["instance"]
    assert (instance["multi"], instance["includeAll"], instance["allValue"]) == (True, True, ".*")
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        sources = [panel.get("datasource"), *(t["datasource"] for t in panel.get("targets", []))]
        assert all(s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources), panel[
            "title"
        ]


SELECTOR = re.compile(r"\b(glb_\w+)(\{[^}]*\})?")


def test_every_dashboard_query_is_scoped_to_the_selected_instances():
    """Every glb metric a panel or the service and cluster variables select is limited to
    $instance, and the stat panels show one value per instance, never a sum across them."""
    dashboard = json.loads(DASHBOARD.read_text())
    for expr in expressions(dashboard):
        for name, labels in SELECTOR.findall(expr):
            if name == "glb_build_info":  # the instance variable's own source
                continue
            assert 'instance=~"$instance"' in labels, (name, expr)
    stats = [p for p in panels(dashboard) if p["type"] == "stat"]
    assert len(stats) == 6
    for panel in stats:
        for target in panel["targets"]:
            aggregations = re.findall(
                r"\b(?:sum|max|min|avg|count)\b\s*(by\s*\([^)]*\))?", target["expr"]
            )
            assert all(by.replace(" ", "") == "by(instance)" for by in aggregations), target
            assert target["legendFormat"] == "{{instance}}", panel["title"]
