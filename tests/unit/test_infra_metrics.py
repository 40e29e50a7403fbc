"""infra/prometheus/alerts.yml and infra/grafana/trtfarm-dashboard.json: well-formed, the alerts the runbook
promises, and `promtool check rules` where promtool is installed (scripts/setup installs it as root). That a
real farm exports every metric they name: tests/integration/test_metrics.py."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.infra_metrics import ALERTS, alert_rules, dashboard_panels, metric_names


def test_alert_rules_are_complete() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"TrtfarmQueueWithoutWorker", "TrtfarmBuildFailureRatioHigh", "TrtfarmQueueWaitLong",
            "TrtfarmWorkerLost"} <= set(rules)
    for name, rule in rules.items():
        assert rule["for"] and rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_dashboard_panels_query_farm_metrics() -> None:
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    assert any("histogram_quantile" in t["expr"] for p in panels for t in p["targets"])
    names = metric_names()
    assert {"trtfarm_queue_depth", "trtfarm_queue_oldest_wait_seconds", "trtfarm_workers_live",
            "trtfarm_build_phase_duration_seconds_bucket", "trtfarm_http_request_duration_seconds_bucket",
            "trtfarm_http_response_bytes_total", "trtfarm_timing_cache_lookups_total",
            "trtfarm_engine_validations_total", "trtfarm_builds"} <= names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (scripts/setup as root)")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
