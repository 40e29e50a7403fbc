"""Every benchmark in bench/ runs (tiny sizes, short runs): the scripts stay alive. What they measure is in
docs/benchmarks.md; here only that they finish and report what they should, without errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

BENCHES = {
    "registry_load.py": ["--clients", "20", "--seconds", "2"],
    "resolve_scale.py": ["--total", "12000", "--calls", "10", "--seconds", "1"],
    "submit_load.py": ["--seconds", "1", "--connections", "10", "--stampede", "50"],
    "intake.py": ["--upload-mb", "20"],
    "fetch.py": ["--model-mb", "2", "--engine-mb", "2", "--hits", "20"],
    "schedule.py": ["--builds", "4", "--direct", "1"],
    "upload.py": ["--model-mb", "4", "--repeat", "2"],
}


@pytest.mark.parametrize("script", sorted(BENCHES))
def test_benchmark_runs(script: str, services: None, tmp_path: Path) -> None:
    if script not in ("intake.py", "fetch.py", "schedule.py", "upload.py"):
        assert shutil.which("wrk"), "the benchmarks need wrk (scripts/services installs it)"
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, f"bench/{script}", *BENCHES[script], "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    if script == "registry_load.py":
        assert report["mixed"]["requests"] > 0 and report["mixed"]["non_2xx_3xx"] == 0
    elif script == "resolve_scale.py":
        assert set(report["service"]) == {"10", "100", "1000", "10000"} and report["total_engine_rows"] == 12000
        assert report["http_read_cache_false"]["c10"]["requests"] > 0
        assert report["service"]["10000"]["summary_rows"] > 0  # the seeding filled the signature summary
    elif script == "submit_load.py":
        assert report["duplicate_submits"]["non_2xx_3xx"] == 0
        assert report["duplicate_submits_read_cache_off"]["non_2xx_3xx"] == 0
        assert report["stampede"]["statuses"] == {"201": 1, "200": 49} and report["stampede"]["build_ids"] == 1
        assert report["stampede"]["build_rows_with_the_key"] == 1
    elif script == "upload.py":
        assert report["farm_upload_s"] > 0 and report["farm_plain_upload_s"] > 0 and report["boto3_upload_file_s"] > 0
        assert len(report["runs"]) == 2
    elif script == "schedule.py":
        assert report["failed"] == 0 and report["wall_s"] > 0 and report["runner_build_alone_s"] > 0
    elif script == "fetch.py":
        assert report["hit_by_id_us"] > 0 and report["cli_fetch_hit_wall_s"] > 0 and report["cold_fetch_s"] > 0
        assert len(report["cold_fetch_runs_s"]) == 5 and report["cold_fetch_unstamped_s"] > 0
    else:
        assert report
