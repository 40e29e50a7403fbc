"""The metric names that infra/prometheus/alerts.yml and infra/grafana/trtfarm-dashboard.json query
(tests/unit/test_infra_metrics.py checks the files' shape, tests/integration/test_metrics.py that a real farm
exports every name)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "infra" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "infra" / "grafana" / "trtfarm-dashboard.json"
METRIC = re.compile(r"\btrtfarm_[A-Za-z0-9_:]*")


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def expressions() -> list[str]:
    panels = [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]
    return [rule["expr"] for rule in alert_rules()] + panels


def metric_names() -> set[str]:
    """Every trtfarm_* series name the expressions use (label values never start with trtfarm_)."""
    return {name for expr in expressions() for name in METRIC.findall(expr)}
