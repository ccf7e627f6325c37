"""The Grafana dashboards and provisioning in deploy/grafana, as committed.

No Grafana can be installed here (it is not packaged for Debian), so the files are checked as
Grafana reads them (the provisioning YAML, the dashboard JSON: panels, data sources, targets,
template variables), and every query is run against the real servers it is written for:

* PromQL: against a real gateway process, whose /metrics must export every metric a dashboard
  names (with the labels it groups and filters by), and in a real VictoriaMetrics scraping that
  gateway with deploy/victoriametrics/scrape.yml (the compose scrape config), which must accept
  every expression;
* InfluxQL: against a real InfluxDB 1.x holding what the gateway wrote (InfluxDB 2 answers the
  same InfluxQL on its v1 API): every query must run and return series.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from simulators.load import pregenerate, publish_all
from tests.ingest import store_env, wait_ingested
from tests.servers import GatewayProcess, Influxd, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
SCRAPE = ROOT / "deploy" / "victoriametrics" / "scrape.yml"
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "table", "bargauge", "gauge", "barchart", "text", "row"}
GRAFANA_VARIABLES = {"timeFilter", "__interval", "__rate_interval", "__range"}
METRIC = re.compile(r"\b(?:homecare|process)_[a-z0-9_]+\b")
LABELS = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)|\{([^}]*)\}")
SITE, BED = "site-01", "bed-0001"


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARDS]


def datasources() -> dict[str, str]:
    """Provisioned data sources: uid to type."""
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "homecare.yml")
                            .read_text())
    assert config["apiVersion"] == 1
    return {source["uid"]: source["type"] for source in config["datasources"]}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(kind: str) -> list[tuple[str, str]]:
    """``(dashboard/panel, query)`` of every target querying a ``kind`` data source."""
    out = []
    for board in dashboards():
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == kind:
                    out.append((f"{board['uid']}/{panel['title']}",
                                target["expr"] if kind == "prometheus" else target["query"]))
    return out


def test_the_dashboards_are_what_grafana_provisions() -> None:
    sources = datasources()
    assert set(sources.values()) == {"prometheus", "influxdb"}
    assert len(DASHBOARDS) >= 3
    uids = [board["uid"] for board in dashboards()]
    assert len(set(uids)) == len(uids)
    for board in dashboards():
        assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), board["uid"]
        assert board["title"]
        assert isinstance(board["schemaVersion"], int)
        variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for variable in board.get("templating", {}).get("list", []):
            assert sources[variable["datasource"]["uid"]] == variable["datasource"]["type"]
        ids = [panel["id"] for panel in panels(board)]
        assert len(set(ids)) == len(ids), f"{board['uid']}: panel ids repeat"
        for panel in panels(board):
            where = f"{board['uid']}/{panel['title']}"
            assert panel["type"] in PANEL_TYPES, where
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in "hwxy"), where
            assert grid["x"] >= 0, where
            assert grid["x"] + grid["w"] <= 24, where
            if panel["type"] == "row":
                continue
            source = panel["datasource"]
            assert sources[source["uid"]] == source["type"], where
            assert panel["targets"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), where
            for target in panel["targets"]:
                assert target["datasource"] == source, where
                query = target.get("expr") if source["type"] == "prometheus" else (
                    target.get("query"))
                assert query, where
                if source["type"] == "influxdb":
                    assert target["rawQuery"] is True, where
                    assert target["resultFormat"] in ("time_series", "table"), where
                for name in re.findall(r"\$(\w+)", query):
                    assert name in variables | GRAFANA_VARIABLES, f"{where}: ${name} undefined"


def test_compose_mounts_what_the_provisioning_reads() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "homecare.yml")
                              .read_text())["providers"][0]
    mounts = {volume.split(":")[1]: volume.split(":")[0]
              for volume in compose["grafana"]["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    environment = compose["grafana"]["environment"]
    provisioning = (GRAFANA / "provisioning" / "datasources" / "homecare.yml").read_text()
    values = "\n".join(line for line in provisioning.splitlines()
                       if not line.lstrip().startswith("#"))
    for variable in re.findall(r"\$\{(\w+)\}", values):
        assert variable in environment, f"Grafana's environment lacks {variable}"
    metrics = compose["victoriametrics"]
    vm_mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in metrics["volumes"]}
    [config] = [arg.split("=", 1)[1] for arg in metrics["command"]
                if arg.startswith("-promscrape.config=")]
    assert vm_mounts[config] == "./deploy/victoriametrics/scrape.yml"
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "homecare.yml")
                             .read_text())["datasources"]
    urls = {source["type"]: source["url"] for source in sources}
    assert urls["prometheus"] == "http://victoriametrics:8428"
    assert urls["influxdb"] == "http://influxdb:8086"
    scrape = yaml.safe_load(SCRAPE.read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["gateway:8080"]
    assert compose["gateway"]["environment"]["HOMECARE_API_ADDR"].endswith(":8080")


class ScrapingVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics scraping with a Prometheus scrape config, as in docker-compose.yml."""

    def __init__(self, workdir: Path, scrape_config: Path) -> None:
        super().__init__(workdir)
        self.scrape_config = scrape_config

    def command(self) -> list[str]:
        return [*super().command(), f"-promscrape.config={self.scrape_config}",
                "-promscrape.config.strictParse"]


def _traffic() -> list[tuple[str, bytes]]:
    """An hour of simulated beds up to now, and a press, a fall and vitals on one bed."""
    now = time.time_ns() // 1_000_000
    messages = pregenerate(beds=4, n_messages=3_000, seed=5, start_ms=now - 3_600_000)
    base = f"homecare/v1/{SITE}/{BED}"
    for i, (topic, body) in enumerate([
            (f"{base}/button/btn-0001/event", {"event": "press"}),
            (f"{base}/fall/fs-0001/event", {"event": "fall_detected", "confidence": 0.9,
                                            "posture": "lying"}),
            (f"{base}/fall/fs-0001/telemetry", {"in_bed": True, "heart_rate": 66.0,
                                                "breathing_rate": 15.0})]):
        messages.append((topic, json.dumps({"ts": now - 60_000 + i, "seq": 900_000 + i,
                                            **body}).encode()))
    return messages


@pytest.fixture
def gateway(mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
            ) -> Iterator[GatewayProcess]:
    """A gateway writing to ``influxd``, with upstream delivery configured (to a closed port:
    its metrics exist, its deliveries fail), that has taken in an hour of traffic."""
    env = {**store_env(influxd), "HOMECARE_CLOCK_WINDOW_S": "86400",
           "HOMECARE_UPSTREAM_URL": "http://127.0.0.1:9/ingest",
           "HOMECARE_UPSTREAM_SECRET": "a-test-secret-of-some-length"}
    process = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url, env=env)
    process.start()
    try:
        process.wait_connected()
        traffic = _traffic()
        asyncio.run(publish_all(mosquitto.url, traffic))
        wait_ingested(process, len(traffic))
        yield process
    finally:
        process.stop()
    assert process.returncode == 0, process.log_tail()


def _exported(text: str) -> dict[str, set[str] | None]:
    """Every series name /metrics exports, with the label names its samples carry (None for a
    family without samples yet: its labels are unknown)."""
    out: dict[str, set[str] | None] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                 "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",)}
    for family in text_string_to_metric_families(text):
        names = [family.name + s for s in suffixes.get(family.type, ("",))]
        for name in names:
            out.setdefault(name, None)
        for sample in family.samples:
            labels = out.get(sample.name) or set()
            out[sample.name] = labels | set(sample.labels)
    return out


def _label_names(expr: str) -> set[str]:
    names = set()
    for grouping, matchers in LABELS.findall(expr):
        if grouping:
            names |= {n.strip() for n in grouping.split(",") if n.strip()}
        if matchers:
            names |= {m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)}
    return names - {"le", "instance", "job"}


def test_every_promql_expression_names_metrics_the_gateway_exports(
        gateway: GatewayProcess, tmp_path: Path) -> None:
    exported = _exported(httpx.get(f"{gateway.url}/metrics", timeout=10).text)
    expressions = targets("prometheus")
    assert len(expressions) >= 30
    for where, expr in expressions:
        metrics = METRIC.findall(expr)
        assert metrics, f"{where}: no metric in {expr!r}"
        for metric in metrics:
            assert metric in exported, f"{where}: {metric} is not exported by the gateway"
        wanted = _label_names(expr)
        known = [exported[m] for m in metrics if exported[m] is not None]
        if wanted and known:
            have = set().union(*[labels for labels in known if labels is not None])
            assert wanted <= have, f"{where}: labels {wanted - have} not on {metrics}"

    # The compose scrape config, pointed at this gateway, in a real VictoriaMetrics: it scrapes
    # the gateway and answers every expression (a syntax error is HTTP 422).
    config = yaml.safe_load(SCRAPE.read_text())
    config["scrape_configs"][0]["scrape_interval"] = "1s"
    config["scrape_configs"][0]["scrape_timeout"] = "1s"
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [
        f"{gateway.host}:{gateway.port}"]
    scrape = tmp_path / "scrape.yml"
    scrape.write_text(yaml.safe_dump(config))
    server = ScrapingVictoriaMetrics(tmp_path / "vm", scrape)
    server.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            server.flush()
            up = httpx.get(f"{server.url}/api/v1/query", params={
                "query": 'up{job="homecare-gateway"}'}, timeout=10).json()["data"]["result"]
            if up and up[0]["value"][1] == "1":
                break
            assert time.monotonic() < deadline, f"not scraped: {up}\n{server.log_tail()}"
            time.sleep(0.5)
        for where, expr in expressions:
            query = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
            r = httpx.get(f"{server.url}/api/v1/query", params={"query": query}, timeout=10)
            assert r.status_code == 200, f"{where}: {expr!r}: {r.text}"
            assert r.json()["status"] == "success", f"{where}: {r.text}"
        received = httpx.get(f"{server.url}/api/v1/query", params={
            "query": "sum(homecare_messages_received_total)"}, timeout=10).json()
        assert float(received["data"]["result"][0]["value"][1]) > 0
    finally:
        server.stop()


def _influxql(query: str) -> str:
    return (query.replace("$timeFilter", "time > now() - 3h")
            .replace("$__interval", "1m").replace("$site", SITE).replace("$bed", BED))


def test_every_influxql_query_runs_on_what_the_gateway_wrote(gateway: GatewayProcess,
                                                              influxd: Influxd) -> None:
    queries = targets("influxdb")
    assert len(queries) >= 8
    for board in dashboards():
        for variable in board.get("templating", {}).get("list", []):
            if variable["datasource"]["type"] == "influxdb":
                queries.append((f"{board['uid']}/${variable['name']}", variable["query"]))
    for where, query in queries:
        results = influxd.query("homecare", _influxql(query))
        assert results, f"{where}: no series for {_influxql(query)!r}"
    sites = influxd.query("homecare", _influxql(
        'SHOW TAG VALUES FROM "device_status" WITH KEY = "site"'))
    assert {row["value"] for row in sites} == {SITE}
