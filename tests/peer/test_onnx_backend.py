"""Peer suite: ONNX's own backend test cases, pushed through the farm with the ONNX Runtime toolchain.

One embedded farm (`trtfarm up --workers 2`, a real subprocess) for the module. Every case's model is
uploaded through the SDK and submitted as target `onnxruntime` (one optimization profile, min = opt =
max = the shipped input shape, for each dynamic input), all concurrently; the farm's workers build them;
each engine is fetched through the SDK (sha256-verified cache), run with ONNX Runtime on the shipped
inputs and compared with the shipped outputs by onnx's own rule (rtol 1e-3, atol 1e-7; see
onnx_backend_cases.py).

Verdicts (one test per case; nothing is hidden):
- pass: the farm's engine reproduces the expected outputs.
- xfail: ONNX Runtime itself — the same release, on this host, no farm involved (measured in this run) —
  cannot run the case or does not match it, and the farm reported that failure with an error code and
  message; or the model fails onnx.checker and the farm refused it (a legitimate input problem).
- fail: anything else: the farm rejected, failed or mismatched a case that ONNX Runtime alone handles.

At the end of a full run the results go to tests/peer/results/onnxruntime.json and docs/peer-onnxruntime.md
(pass rate, failure classes, every failure with its reason).
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections import Counter, defaultdict

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.embedded import REPO, EmbeddedFarm  # noqa: E402
from tests.peer import farm_run  # noqa: E402
from tests.peer.onnx_backend_cases import ATOL, RTOL, discover  # noqa: E402

pytestmark = pytest.mark.peer

CASES = {c.id: c for c in discover()}
RESULTS_DIR = REPO / "tests" / "peer" / "results"
DOC = REPO / "docs" / "peer-onnxruntime.md"
WORKERS = 2  # two CPU workers: builds are short subprocess chains, two keep both cores busy


@pytest.fixture(scope="module")
def peer_farm(tmp_path_factory):
    farm = EmbeddedFarm(tmp_path_factory.mktemp("peer-farm"), workers=WORKERS)
    farm.start()
    yield farm
    farm.stop()


@pytest.fixture(scope="module")
def outcomes(request, peer_farm, tmp_path_factory):
    selected = [item.callspec.params["case_id"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    started = time.monotonic()
    results = farm_run.push(peer_farm.url, [CASES[c] for c in selected], tmp_path_factory.mktemp("peer-cache"))
    seconds = time.monotonic() - started
    yield results
    report = summarize(results, seconds, peer_farm.url)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if len(selected) == len(CASES):
        (RESULTS_DIR / "onnxruntime.json").write_text(json.dumps(report, indent=1) + "\n")
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(markdown(report))
    else:  # a partial run (-k ...) never overwrites the recorded full results
        (RESULTS_DIR / "onnxruntime-partial.json").write_text(json.dumps(report, indent=1) + "\n")


@pytest.mark.parametrize("case_id", list(CASES))
def test_case_through_the_farm(case_id, outcomes):
    out = outcomes[case_id]
    kind, reason = verdict(out)
    if kind == "xfail":
        pytest.xfail(reason)
    assert kind == "pass", reason


# --------------------------------------------------------------------------------------------- verdicts


def verdict(out: farm_run.Outcome) -> tuple[str, str]:
    if out.status == farm_run.PASSED:
        return "pass", "passed"
    farm_said = f"farm: {out.status}" + (f" [{out.code}]" if out.code else "") + f": {out.message}"
    reported = bool(out.code and out.message)  # the farm said what went wrong, with a stable code
    short = f"farm: {out.status}" + (f" [{out.code}]" if out.code else "")
    if out.checker and out.status == farm_run.REJECTED and reported:
        return "xfail", f"legitimate input problem: the model fails onnx.checker ({out.checker[:150]}); {short}"
    if out.direct and (reported or out.status in (farm_run.MISMATCH, farm_run.RUN_FAILED)):
        return "xfail", f"toolchain limitation (ONNX Runtime alone fails it too): {failure_class(out)}; {short}"
    return "fail", f"the farm fails a case ONNX Runtime alone handles: {farm_said}"


# ------------------------------------------------------------------------------------------ the report

_CLASSES = [
    (re.compile(r"Could not find an implementation for \w+\(\d+\)"),
     "ONNX Runtime has no kernel for the op at the model's old opset version (opset 1-6 exports)"),
    (re.compile(r"ai\.onnx\.preview\.training:Gradient"),
     "training-only op (ai.onnx.preview.training Gradient): not in ONNX Runtime's inference build"),
    (re.compile(r"Failed to construct locale"),
     "this host lacks the en_US.UTF-8 locale that ONNX Runtime's StringNormalizer needs (environment)"),
]


def failure_class(out: farm_run.Outcome) -> str:
    text = " ".join(filter(None, [out.message, out.direct]))
    for pattern, name in _CLASSES:
        if pattern.search(text):
            return name
    return f"{out.status}" + (f" [{out.code}]" if out.code else "")


def summarize(results: dict[str, farm_run.Outcome], seconds: float, url: str) -> dict:
    import onnx
    import onnxruntime

    cases = []
    for _, out in sorted(results.items()):
        kind, reason = verdict(out)
        cases.append({**out.to_dict(), "verdict": kind, "reason": None if kind == "pass" else reason,
                      "class": None if kind == "pass" else failure_class(out)})
    total = len(cases)
    passed = sum(c["verdict"] == "pass" for c in cases)
    runnable = [c for c in cases if c["direct"] is None]
    target = next((c["target"] for c in cases if c["target"]), "onnxruntime")
    return {
        "suite": "onnx backend test data: " + ", ".join(sorted({c.suite for c in CASES.values()})),
        "toolchain_target": target,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "host": f"{platform.machine()}, {platform.system()}",
        "workers": WORKERS,
        "tolerance": {"rtol": RTOL, "atol": ATOL, "rule": "onnx.backend.test.runner assert_similar_outputs"},
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(seconds, 1),
        "total": total,
        "passed": passed,
        "pass_rate": round(passed / total, 4) if total else None,
        "onnxruntime_alone_runs": len(runnable),
        "passed_of_those": sum(c["verdict"] == "pass" for c in runnable),
        "verdicts": dict(Counter(c["verdict"] for c in cases)),
        "farm_outcomes": dict(Counter(c["status"] for c in cases)),
        "classes": dict(Counter(c["class"] for c in cases if c["class"])),
        "farm_validation": dict(Counter(str((c["farm_validation"] or {}).get("passed")).lower()
                                        for c in cases if c["farm_validation"])),
        "cases": cases,
    }


def markdown(report: dict) -> str:
    total, passed = report["total"], report["passed"]
    lines = [
        "# Peer suite: ONNX backend test cases through the farm (ONNX Runtime toolchain)",
        "",
        "Generated by `tests/peer/test_onnx_backend.py` (`pytest -m peer tests/peer`); do not edit by hand.",
        "",
        f"- cases: the {total} model cases shipped inside `onnx` {report['onnx']} "
        "(`backend/test/data/{pytorch-converted,pytorch-operator,simple}`: model + inputs + expected outputs)",
        f"- toolchain: `{report['toolchain_target']}` (ONNX Runtime {report['onnxruntime']}), embedded farm with "
        f"{report['workers']} CPU workers, {report['host']}; run on {report['date']} in {report['seconds']} s",
        "- each case: SDK upload → submit (profile min = opt = max = the shipped input shapes for dynamic inputs) → "
        "build + farm validation → SDK fetch (sha256 verified) → run the engine with ONNX Runtime on the shipped "
        "inputs → compare with the shipped outputs",
        f"- comparison: onnx's own backend-test rule: same shapes and dtypes, strings equal, numbers within "
        f"`np.testing.assert_allclose(rtol={RTOL:g}, atol={ATOL:g})` (onnx's defaults)",
        "",
        f"**Pass rate: {passed}/{total} ({100 * passed / total:.1f}%).** "
        f"Of the {report['onnxruntime_alone_runs']} cases that ONNX Runtime {report['onnxruntime']} runs and matches "
        f"by itself on this host (no farm), the farm passes {report['passed_of_those']}.",
        "",
        "| verdict | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(report["verdicts"].items())],
        "",
        "`xfail` = ONNX Runtime alone cannot run the case (measured in the same run without the farm), and the "
        "farm reported that failure with an error code and message. Such cases count as failures in the pass rate.",
        "",
        "## Failure classes",
        "",
        "| class | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(report["classes"].items(), key=lambda kv: -kv[1])],
        "",
        "## Every failure",
        "",
        "| case | verdict | farm outcome | reason |",
        "|---|---|---|---|",
    ]
    for c in report["cases"]:
        if c["verdict"] == "pass":
            continue
        outcome = c["status"] + (f" `{c['code']}`" if c["code"] else "")
        message = (c["message"] or "").replace("|", "\\|").replace("\n", " ")
        message = re.sub(r"/tmp/\S+/model\.onnx", "model.onnx", message)[:300]
        lines.append(f"| {c['case']} | {c['verdict']} | {outcome} | {c['class']}: {message} |")
    inconclusive = [c for c in report["cases"] if c["farm_validation"] and c["farm_validation"].get("passed") is None]
    failed_check = [c for c in report["cases"] if c["farm_validation"] and c["farm_validation"].get("passed") is False]
    lines += [
        "", "## The farm's own validation", "",
        "Every build is validated by the farm on random inputs inside the spec's profiles (engine vs the original "
        "model). Where random values are no valid input for the model (a shape tensor, split sizes that must add "
        "up) and the original model fails on them too, that validation is recorded as inconclusive "
        "(`validation_passed = null`) instead of failing the build.", "",
        f"- engines whose farm validation passed: {report['farm_validation'].get('true', 0)}",
        f"- inconclusive (random inputs rejected by the original model too): {len(inconclusive)}"
        + (": " + ", ".join(f"`{c['case']}`" for c in inconclusive) if inconclusive else ""),
        f"- failed: {len(failed_check)}"
        + (": " + ", ".join(f"`{c['case']}`" for c in failed_check) if failed_check else ""),
    ]
    by_status = defaultdict(list)
    for c in report["cases"]:
        by_status[c["verdict"]].append(c["case"])
    lines += ["", "## Passing cases", "", ", ".join(f"`{c}`" for c in by_status["pass"]) or "none", ""]
    return "\n".join(lines)
