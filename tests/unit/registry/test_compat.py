"""The compatibility matrix of docs/design.md ("Which engine serves which runtime"), table-driven."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from datetime import datetime, timezone

import pytest

from registry.compat import (
    Candidate,
    Match,
    MatchClass,
    Rejection,
    Runtime,
    assess,
    classify,
    no_match,
    parse_version,
    rank,
    resolve,
)
from registry.errors import NoCompatibleEngine, NotFound

H100 = "h100-80gb-hbm3"
H100_PCIE = "h100-pcie"
A100 = "a100-sxm4-80gb"
CPU = "x86_64-avx2"


def rt(version="8.6.0", sku=H100, cc="sm_90", **kw) -> Runtime:
    return Runtime("tensorrt", version, sku=sku, cc=cc, **kw)


def plan(version="8.6.0", device=H100, sku=H100, cc="sm_90", hw="none", vc=False, **kw) -> Candidate:
    kw.setdefault("engine_id", "e1")
    return Candidate(
        toolchain="tensorrt", version=version, device=device, sku=sku, cc=cc,
        hardware_compatibility=hw, version_compatible=vc, **kw,
    )


def same_cc(sku=H100, cc="sm_90", **kw) -> Candidate:
    return plan(device=cc, sku=sku, cc=cc, hw="same_compute_capability", **kw)


def amp(sku=A100, cc="sm_80", **kw) -> Candidate:
    return plan(device="ampere_plus", sku=sku, cc=cc, hw="ampere_plus", **kw)


def ort(version="1.23.2", device=CPU, hw="none") -> Candidate:
    return Candidate("o1", "onnxruntime", version, device, hardware_compatibility=hw, version_compatible=False)


def ort_rt(version="1.23.2", cpu=CPU) -> Runtime:
    return Runtime("onnxruntime", version, cpu=cpu)


E, S, A, V = "exact", "same_compute_capability", "ampere_plus", "version_compatible"

# (id, candidate, runtime, expected class or None, substring of the reason / rejection)
MATRIX = [
    # 1 exact
    ("exact", plan(), rt(), E, "runtime's SKU"),
    ("exact-version-4-parts", plan(version="8.6.0.12"), rt(), E, ""),
    ("exact-version-2-parts", plan(version="8.6"), rt(), E, ""),
    ("exact-wrong-version", plan(version="8.6.1"), rt(), None, "older than the builder"),
    ("exact-newer-runtime-no-vc", plan(), rt(version="8.6.1"), None, "without version_compatible"),
    ("exact-other-cc", plan(), rt(sku=A100, cc="sm_80"), None, "hardware compatibility none"),
    ("exact-sku-from-device", plan(sku=None), rt(), E, ""),
    # 2 same compute capability
    ("samecc-same-sku", same_cc(), rt(), S, "sm_90"),
    ("samecc-other-sku", same_cc(sku=H100_PCIE), rt(), S, ""),
    ("samecc-cc-given-as-number", same_cc(), rt(cc="9.0"), S, ""),
    ("samecc-other-cc", same_cc(), rt(sku=A100, cc="sm_80"), None, "same_compute_capability plan for sm_90"),
    ("samecc-runtime-cc-unknown-same-sku", same_cc(), rt(cc=None), S, ""),
    ("samecc-runtime-cc-unknown-other-sku", same_cc(sku=H100_PCIE), rt(cc=None), None, "unknown"),
    ("cross-sku-none-rejected", plan(device=H100_PCIE, sku=H100_PCIE), rt(), None, "allow cross-SKU"),
    ("cross-sku-none-allowed", plan(device=H100_PCIE, sku=H100_PCIE), rt(allow_cross_sku=True), S, "cross-SKU"),
    ("cross-sku-allowed-other-cc", plan(device=A100, sku=A100, cc="sm_80"), rt(allow_cross_sku=True), None, "none"),
    # 3 ampere_plus
    ("ampere-sm80", amp(), rt(sku=A100, cc="sm_80"), A, "sm_80"),
    ("ampere-sm86", amp(), rt(sku="rtx-a6000", cc="sm_86"), A, ""),
    ("ampere-sm89", amp(), rt(sku="l4", cc="sm_89"), A, ""),
    ("ampere-sm90", amp(), rt(), A, "sm_90"),
    ("ampere-sm75", amp(), rt(sku="t4", cc="sm_75"), None, "needs cc >= sm_80"),
    ("ampere-sm70", amp(), rt(sku="v100-sxm2-16gb", cc="sm_70"), None, "sm_70"),
    ("ampere-cc-unknown", amp(), rt(cc=None), None, "unknown"),
    ("ampere-other-version", amp(version="10.0.1"), rt(), None, "older than the builder"),
    # 4 version compatible
    ("vc-8.6-to-8.6.1", plan(vc=True), rt(version="8.6.1"), V, "loads on 8.6.1"),
    ("vc-8.6-to-10.0", plan(vc=True), rt(version="10.0.0"), V, ""),
    ("vc-8.6-to-9.0", plan(vc=True), rt(version="9.0.0"), V, ""),
    ("vc-8.6-to-11.0", plan(vc=True), rt(version="11.0.0"), None, "TensorRT 8 do not load on TensorRT 11"),
    ("vc-10.0-to-10.3", plan(version="10.0.1", vc=True), rt(version="10.3.0"), V, ""),
    ("vc-10.0-to-11.0", plan(version="10.0.1", vc=True), rt(version="11.0.0"), V, ""),
    ("vc-10.8-to-11.1", plan(version="10.8.0", vc=True), rt(version="11.1.0"), V, ""),
    ("vc-9.0-to-10.0", plan(version="9.0.0", vc=True), rt(version="10.0.0"), None, "TensorRT 9 do not load"),
    ("vc-8.5-builder", plan(version="8.5.3", vc=True), rt(version="8.6.1"), None, "builder >= 8.6"),
    ("vc-runtime-older", plan(version="10.0.1", vc=True), rt(version="8.6.1"), None, "older than the builder"),
    ("vc-runtime-older-minor", plan(version="8.6.1", vc=True), rt(version="8.6.0"), None, "older"),
    ("no-vc-10-runtime", plan(), rt(version="10.0.0"), None, "cannot load a plan built by 8.6.0"),
    ("vc-same-cc-device", same_cc(vc=True, sku=H100_PCIE), rt(version="10.0.0"), V, "same_compute_capability"),
    ("vc-ampere-device", amp(vc=True), rt(version="10.0.0"), V, "ampere_plus"),
    ("vc-ampere-device-sm75", amp(vc=True), rt(version="10.0.0", sku="t4", cc="sm_75"), None, "sm_80"),
    ("vc-cross-sku-no-optin", plan(vc=True, device=H100_PCIE, sku=H100_PCIE), rt(version="10.0.0"), None, "cross-SKU"),
    ("vc-cross-sku-optin", plan(vc=True, device=H100_PCIE, sku=H100_PCIE), rt(version="10.0.0", allow_cross_sku=True),
     V, "cross-SKU"),
    ("vc-exclude-lean-cross-version", plan(vc=True, exclude_lean_runtime=True), rt(version="10.0.0"), None,
     "excludes its lean runtime"),
    ("vc-exclude-lean-same-version", plan(vc=True, exclude_lean_runtime=True), rt(), E, ""),
    # lean / dispatch runtime
    ("lean-no-host-code", plan(vc=True), rt(version="10.0.0", lean_runtime=True), None, "engine_host_code_allowed"),
    ("lean-host-code", plan(vc=True), rt(version="10.0.0", lean_runtime=True, engine_host_code_allowed=True), V, ""),
    ("lean-same-version-host-code", plan(vc=True), rt(lean_runtime=True, engine_host_code_allowed=True), E, ""),
    ("lean-non-vc-plan", plan(), rt(lean_runtime=True, engine_host_code_allowed=True), None, "only version-compatible"),
    ("lean-excluded-runtime-same-version", plan(vc=True, exclude_lean_runtime=True), rt(lean_runtime=True), E, ""),
    ("full-runtime-vc-no-host-code", plan(vc=True), rt(version="10.0.0"), V, ""),
    # toolchains
    ("trt-plan-ort-runtime", plan(), ort_rt(), None, "built by tensorrt, the runtime is onnxruntime"),
    ("ort-model-trt-runtime", ort(), rt(), None, "built by onnxruntime"),
    ("ort-exact", ort(), ort_rt(), E, CPU),
    ("ort-wrong-isa", ort(device="x86_64-avx512"), ort_rt(), None,
     "optimized for x86_64-avx512 at a hardware-specific level (layout or all)"),
    ("ort-any-isa-other-isa", ort(device="x86_64-avx512", hw="any_isa"), ort_rt(), MatchClass.ANY_ISA,
     "loads on any x86_64 CPU"),
    ("ort-any-isa-same-isa", ort(hw="any_isa"), ort_rt(), E, CPU),
    ("ort-any-isa-other-arch", ort(device="aarch64-neon", hw="any_isa"), ort_rt(), None, "aarch64-neon"),
    ("ort-any-isa-other-version", ort(version="1.22.0", hw="any_isa"), ort_rt(), None, "1.22.0"),
    ("ort-wrong-arch", ort(device="aarch64-neon"), ort_rt(), None, "aarch64-neon"),
    ("ort-other-version", ort(version="1.22.0"), ort_rt(), None, "1.22.0"),
    ("ort-cpu-unknown", ort(), ort_rt(cpu=None), None, "unknown"),
    ("unknown-hw-level", plan(hw="bogus"), rt(), None, "unknown hardware compatibility"),
]


@pytest.mark.parametrize("candidate, runtime, expected, text", [row[1:] for row in MATRIX],
                         ids=[row[0] for row in MATRIX])
def test_matrix(candidate, runtime, expected, text):
    match = classify(candidate, runtime)
    verdict = assess(candidate, runtime)
    if expected is None:
        assert match is None
        assert isinstance(verdict, Rejection)
        assert verdict.engine_id == candidate.engine_id
        assert text in verdict.why
        assert "\n" not in verdict.why and verdict.why
    else:
        assert isinstance(match, Match)
        assert match.match_class == MatchClass(expected) == expected
        assert text in match.reason


def test_matrix_is_big_enough():
    assert len(MATRIX) >= 40


@pytest.mark.parametrize("candidate, runtime, warned", [
    (plan(device=H100_PCIE, sku=H100_PCIE), rt(allow_cross_sku=True), True),
    (plan(vc=True, device=H100_PCIE, sku=H100_PCIE), rt(version="10.0.0", allow_cross_sku=True), True),
    (same_cc(sku=H100_PCIE), rt(), False),
    (plan(), rt(allow_cross_sku=True), False),
])
def test_cross_sku_warning(candidate, runtime, warned):
    match = classify(candidate, runtime)
    assert match is not None
    if warned:
        assert "may be slower or fail to load" in match.warning
    else:
        assert match.warning is None


def test_rank_order_of_classes():
    candidates = [
        plan(engine_id="vc", vc=True, version="8.6.0", created_at=300),
        amp(engine_id="amp", version="10.0.0", created_at=200),
        same_cc(engine_id="cc", version="10.0.0", sku=H100_PCIE, created_at=250),
        plan(engine_id="exact", version="10.0.0", created_at=100),
        plan(engine_id="old-trt", version="8.6.0", created_at=400),
    ]
    ranked = rank(candidates, rt(version="10.0.0"))
    assert [r.candidate.engine_id for r in ranked] == ["exact", "cc", "amp", "vc"]
    assert [r.match_class for r in ranked] == [E, S, A, V]
    assert resolve(candidates, rt(version="10.0.0")).candidate.engine_id == "exact"


def test_ampere_plus_beats_version_compatible():
    candidates = [plan(engine_id="vc", vc=True, created_at=9), amp(engine_id="amp", version="10.0.0", created_at=1)]
    best = resolve(candidates, rt(version="10.0.0"))
    assert (best.candidate.engine_id, best.match_class) == ("amp", A)


@pytest.mark.parametrize("specs, winner", [
    ([("a", 100, 5.0), ("b", 200, 9.0)], "b"),  # newer wins over faster
    ([("a", 100, 5.0), ("b", 100, 3.0)], "b"),  # same age: lower latency
    ([("a", 100, None), ("b", 100, 30.0)], "b"),  # unmeasured last
    ([("a", 100, None), ("b", 100, None)], "a"),  # stable by id
    ([("a", None, 1.0), ("b", 1, 9.0)], "b"),  # unknown age is oldest
])
def test_ties_newer_then_lower_latency(specs, winner):
    candidates = [plan(engine_id=i, created_at=t, latency_ms=ms) for i, t, ms in specs]
    assert resolve(candidates, rt()).candidate.engine_id == winner


def test_within_a_class_the_widest_profiles_win_before_the_newest():
    wide, narrow = plan(engine_id="wide", width=4.0, created_at=1), plan(engine_id="narrow", width=2.0, created_at=2)
    assert [r.candidate.engine_id for r in rank([narrow, wide], rt())] == ["wide", "narrow"]
    as_wide = plan(engine_id="as_wide", width=4.0, created_at=3)
    assert resolve([narrow, wide, as_wide], rt()).candidate.engine_id == "as_wide"  # equally wide: the newer
    widest_worse_class = same_cc(engine_id="cc", width=9.0, created_at=4)
    assert resolve([narrow, wide, widest_worse_class], rt()).candidate.engine_id == "wide"  # the class first


def test_ties_accept_datetimes():
    old = datetime(2024, 1, 1, tzinfo=timezone.utc)
    new = datetime(2025, 1, 1, tzinfo=timezone.utc)
    candidates = [plan(engine_id="old", created_at=old), plan(engine_id="new", created_at=new)]
    assert [r.candidate.engine_id for r in rank(candidates, rt())] == ["new", "old"]


def test_rank_drops_non_matches():
    candidates = [plan(engine_id="ok"), plan(engine_id="no", version="10.0.0")]
    assert [r.candidate.engine_id for r in rank(candidates, rt())] == ["ok"]


def test_no_match_lists_rejections_and_what_to_build():
    candidates = [
        plan(engine_id="e-a100", device=A100, sku=A100, cc="sm_80"),
        plan(engine_id="e-trt10", version="10.0.1"),
    ]
    with pytest.raises(NoCompatibleEngine) as info:
        resolve(candidates, rt(), model="sha256:abc")
    err = info.value
    assert isinstance(err, NoCompatibleEngine) and isinstance(err, NotFound)
    assert err.code == "no_compatible_engine"
    msg = str(err)
    assert msg.startswith(f"no engine of model sha256:abc loads on tensorrt 8.6.0 / {H100} (sm_90); 2 exist: ")
    assert "e-a100: built on a100-sxm4-80gb (sm_80)" in msg
    assert "e-trt10: runtime 8.6.0 is older than the builder 10.0.1" in msg
    assert msg.endswith(f"build one with target tensorrt==8.6.0@{H100}")
    body = err.to_dict()
    assert body["details"]["suggested_target"] == f"tensorrt==8.6.0@{H100}"
    assert [r["engine_id"] for r in body["details"]["rejections"]] == ["e-a100", "e-trt10"]


def test_no_match_with_nothing_built_and_custom_suggestion():
    with pytest.raises(NoCompatibleEngine) as info:
        resolve([], ort_rt(), model="sha256:abc", suggest="onnxruntime==1.23.2@x86_64-avx2")
    msg = str(info.value)
    assert "none has been built" in msg
    assert "onnxruntime 1.23.2 / x86_64-avx2" in msg
    assert msg.endswith("build one with target onnxruntime==1.23.2@x86_64-avx2")


def test_no_match_accepts_plain_tuples():
    err = no_match([("e1", "too old")])
    assert err.details["rejections"] == [Rejection("e1", "too old")._asdict()]
    assert "1 exists: e1: too old" in str(err)


def test_resolution_carries_reason_and_warning():
    best = resolve([plan(device=H100_PCIE, sku=H100_PCIE)], rt(allow_cross_sku=True))
    assert best.match_class == S and best.reason and best.warning


@pytest.mark.parametrize("text, expected", [
    ("8.6.0", (8, 6, 0)), ("8.6", (8, 6, 0)), ("10", (10, 0, 0)), ("8.6.0.12", (8, 6, 0)),
    ("8.6.1.post1", (8, 6, 1)), ("10.0.1rc2", (10, 0, 1)),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_match_class_rank_order():
    assert [m.value for m in sorted(MatchClass, key=lambda m: m.rank)] == [E, "any_isa", S, A, V]
    assert str(MatchClass.EXACT) == "exact" and f"{MatchClass.AMPERE_PLUS}" == "ampere_plus"


def test_models_are_frozen():
    with pytest.raises(FrozenInstanceError):
        rt().version = "10.0.0"  # type: ignore[misc]
    assert replace(plan(), engine_id="x").engine_id == "x"


def test_narrowing_admits_every_candidate_that_loads():
    """compat.narrowing is what resolve filters on in SQL: it may let through engines that do not load, never
    drop one that does (checked over generated fleets, with cc written either way)."""
    import random

    from registry.compat import narrowing
    from tests import fleets

    rng = random.Random(5)
    rows = fleets.engine_rows(rng, "sha256:" + "0" * 64, 3000)
    for row in rows[::3]:
        row["cc"] = {"sm_90": "9.0", "sm_80": "8.0"}.get(row["cc"], row["cc"])
    admitted = loaded = 0
    for _ in range(200):
        runtime = fleets.runtime(rng)
        narrow = narrowing(runtime)
        for row in rows:
            c = fleets.candidate(row)
            admits = narrow.admits(c)
            admitted += admits
            if classify(c, runtime) is not None:
                loaded += 1
                assert admits, (c, runtime)
    assert loaded and admitted < len(rows) * 200  # it does cut: the test would pass on "admit everything" otherwise
