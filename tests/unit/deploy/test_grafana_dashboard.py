"""The Grafana dashboard (deploy/grafana/) and the Prometheus alert rules (deploy/prometheus/):
their shape, and that every metric their PromQL queries is one a live memgate exports.

Metric names are pulled out of each expression by a small PromQL scanner (strings, label
matchers, ranges and grouping clauses removed; function names and keywords skipped); its
own test below shows it finds names and that the check fails for a metric that does not
exist. Where `promtool` (Debian's prometheus package) is installed, it also parses every
expression and runs the rules against synthetic series.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from helpers import observations, wait_for

from memgate_testing.fake_provider import FakeProvider
from memgate_testing.gateway import GatewayProcess

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "deploy" / "grafana" / "memgate-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

# --------------------------------------------------------------------------- PromQL names

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
             "bool", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (Grafana's variables allowed in it)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword, a function or an aggregation
        names.add(name)
    return names


def template_query_names(query: str) -> set[str]:
    """Metric names in a Grafana variable's query: `label_values(selector, label)` or PromQL."""
    match = _LABEL_VALUES.match(query)
    if match:
        return metric_names(match.group(1))
    if re.match(r"^\s*label_values\(\s*\w+\s*\)\s*$", query):
        return set()
    return metric_names(query)


def exported_names(exposition: str) -> set[str]:
    """Names a Prometheus server can query from a /metrics page: every sample's name, and every
    declared family's (a labelled family with no series yet is still declared), a histogram's
    as its _bucket, _sum and _count series."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {name, f"{name}_sum", f"{name}_count"}
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def missing(queried: dict[str, set[str]], exported: set[str]) -> dict[str, set[str]]:
    """Per query's place, the names it uses that are not exported."""
    return {where: names - exported for where, names in queried.items() if names - exported}


# --------------------------------------------------------------------------- the files


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # (a collapsed row holds its panels)
    return out


def queried_names() -> dict[str, set[str]]:
    """Every expression's metric names, by where it is ("panel 'X' A", "alert Y", "variable job")."""
    dash = dashboard()
    queried = {}
    for panel in panels(dash):
        for target in panel.get("targets", []):
            queried[f"panel {panel['title']!r} {target['refId']}"] = metric_names(target["expr"])
    for variable in dash["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queried[f"variable {variable['name']}"] = template_query_names(
                query["query"] if isinstance(query, dict) else query)
    for rule in alert_rules():
        queried[f"alert {rule['alert']}"] = metric_names(rule["expr"])
    return queried


# --------------------------------------------------------------------------- offline checks


def test_scanner_finds_metric_names() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, stream) (rate(memgate_a_bucket{job=~"$job", x="y(z)"}'
            '[$__rate_interval]))) / on() group_left sum(memgate_b offset 5m) > bool 1 '
            'and deriv(sum(max by (stage) (memgate_c))[15m:1m]) > 0 or vector(0) unless up')
    assert metric_names(expr) == {"memgate_a_bucket", "memgate_b", "memgate_c", "up"}
    assert template_query_names('label_values({__name__=~"memgate_.+"}, job)') == set()
    assert template_query_names("label_values(memgate_x_total, job)") == {"memgate_x_total"}


def test_the_check_fails_for_a_metric_that_does_not_exist() -> None:
    exposition = ("# HELP memgate_a_seconds a\n# TYPE memgate_a_seconds histogram\n"
                  'memgate_a_seconds_bucket{le="1.0"} 1.0\n# TYPE memgate_b_total counter\n')
    exported = exported_names(exposition)
    assert exported == {"memgate_a_seconds_bucket", "memgate_a_seconds_sum", "memgate_a_seconds_count",
                        "memgate_b_total"}
    queried = {"ok": metric_names("rate(memgate_b_total[5m]) + memgate_a_seconds_count"),
               "typo": metric_names("rate(memgate_b[5m])"), "base": metric_names("memgate_a_seconds")}
    assert missing(queried, exported) == {"typo": {"memgate_b"}, "base": {"memgate_a_seconds"}}


def test_dashboard_shape() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    all_panels = panels(dash)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    graphs = [p for p in all_panels if p["type"] != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        where = f"panel {panel['title']!r}"
        # Every query goes to the chosen data source: the dashboard imports into any Grafana.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"] and panel.get("description"), where
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), where
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip(), where
            assert metric_names(target["expr"]), f"{where}: no metric found in {target['expr']!r}"
    titles = " | ".join(p["title"].lower() for p in graphs)
    for topic in ("request rate", "error", "latency", "lookup", "degraded", "lag", "backlog", "tokens", "cost",
                  "usage rows", "engine restarts"):
        assert topic in titles, f"no panel about {topic}"


def test_alert_rules_shape() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]
    joined = " ".join(r["expr"] for r in rules)
    for metric in ("memgate_chat_requests_total", "memgate_memory_degraded_total", "memgate_observer_backlog_exchanges",
                   "memgate_observer_lag_seconds_bucket", "memgate_usage_rows_total",
                   "memgate_context_lookup_seconds_bucket"):
        assert metric in joined, f"no alert on {metric}"


# --------------------------------------------------------------------------- promtool, where installed

PROMTOOL = shutil.which("promtool") or "promtool"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: apt-get install "
                                    "prometheus); the PromQL is only scanned, not parsed")


def _grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
            .replace("$job", ".*"))


@needs_promtool
def test_promtool_parses_alerts_and_dashboard_queries(tmp_path: Path) -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The dashboard's queries as recording rules: promtool parses each one.
    records = [{"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": _grafana_to_promql(t["expr"])}
               for p in panels(dashboard()) for t in p.get("targets", [])]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_alerts_fire_when_they_should(tmp_path: Path) -> None:
    # (promtool compares annotations whole: the rules under test are the file's without them)
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump(doc))
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # 10% of chat requests fail with a 502; memory is degraded on a third of them.
                {"series": 'memgate_chat_requests_total{provider="openai",status="200",stream="false",memory="on"}',
                 "values": "0+90x30"},
                {"series": 'memgate_chat_requests_total{provider="openai",status="502",stream="false",memory="on"}',
                 "values": "0+10x30"},
                {"series": 'memgate_memory_degraded_total{reason="context_timeout"}', "values": "0+30x30"},
                {"series": 'memgate_usage_rows_total{outcome="dropped"}', "values": "0 0 0 5 5 5 5 5 5 5"},
                # Exchanges wait in JetStream and no observer acks any.
                {"series": 'memgate_observer_backlog_exchanges{stage="stream"}', "values": "40x30"},
                {"series": "memgate_observer_lag_seconds_count", "values": "7x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "MemgateChatErrorRateHigh",
                 "exp_alerts": [{"exp_labels": {"severity": "critical"}}]},
                {"eval_time": "20m", "alertname": "MemgateMemoryDegraded",
                 "exp_alerts": [{"exp_labels": {"severity": "warning"}}]},
                {"eval_time": "5m", "alertname": "MemgateUsageRowsDropped",
                 "exp_alerts": [{"exp_labels": {"severity": "warning"}}]},
                {"eval_time": "25m", "alertname": "MemgateObserverStalled",
                 "exp_alerts": [{"exp_labels": {"severity": "critical"}}]},
                {"eval_time": "25m", "alertname": "MemgateObserverBacklogGrowing", "exp_alerts": []},
                {"eval_time": "25m", "alertname": "MemgateNoObserverReporting", "exp_alerts": []},
                {"eval_time": "25m", "alertname": "MemgateEngineRestarting", "exp_alerts": []},
            ],
        }],
    }
    path = tmp_path / "alerts-test.yml"
    path.write_text(yaml.safe_dump(tests))
    tested = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# --------------------------------------------------------------------------- against a live gateway


def test_every_queried_metric_is_exported(gateway: GatewayProcess, provider: FakeProvider) -> None:
    thread = f"grafana-{uuid.uuid4().hex[:6]}"
    client = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
    client.chat.completions.create(model="fake/gpt-test", extra_headers={"x-thread-id": thread, "x-resource-id": "g"},
                                   messages=[{"role": "user", "content": "My favourite tea is sencha."}])
    wait_for(lambda: observations(gateway, thread), timeout=15)  # the observer's series too
    page = httpx.get(f"{gateway.url}/metrics", timeout=10)
    assert page.status_code == 200
    exported = exported_names(page.text)
    queried = queried_names()
    assert sum(len(names) for names in queried.values()) >= 30
    assert missing(queried, exported) == {}
    # The series behind the main panels are there, not only declared.
    samples = {line.split("{")[0].split(" ")[0] for line in page.text.splitlines() if not line.startswith("#")}
    assert {"memgate_chat_requests_total", "memgate_context_lookup_seconds_bucket",
            "memgate_observer_lag_seconds_bucket", "memgate_observer_backlog_exchanges"} <= samples
