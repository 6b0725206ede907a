"""Claim verdicts from synthetic worker records with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis import ablation_rows, assess_claims
from bench.claims import load_claims
from bench.runner import ablation_roles, plan_roles
from diffusion.paths import ALT, NEU

ROLE_FIGURES = {  # role: (val_pass_s, train_samples_per_s)
    "base": (1.0, 100.0),
    "candidate": (0.125, 240.0),  # V1 8x faster, T1 2.4x
    "base+val_batches": (0.4, None),  # 2.5x
    "base+val_batch_size": (1.6, None),  # twice the samples: 0.625x, not 2x
    "base+val_compile": (0.5, None),  # 2x: more than the claimed 1.5x
    "base+loader": (None, 130.0),  # 1.3x
    "base+train_compile": (None, 150.0),  # 1.5x
    "base+clip_norm": (None, 80.0),  # clipping costs time; it cannot make a step faster
}


def records(rounds: int = 6, noise: float = 0.01, fail: str | None = None) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for r in range(rounds):
        for role, (val_s, sps) in ROLE_FIGURES.items():
            if role == fail:
                out.append({"role": role, "round": r, "error": "worker exited 1: boom"})
                continue
            phases = {}
            if val_s is not None:
                v = val_s * rng.lognormal(0, noise)
                phases["validate"] = {
                    "val_pass_s": v,
                    "peak_rss_mib": 500.0,
                    "val_samples": 1600,
                    "val_samples_per_s": 1600 / v,
                    "val_loss_stderr": 0.01,
                    "first_val_pass_s": v,
                    "cores_busy": 1.0,
                }
            if sps is not None:
                phases["train"] = {
                    "train_samples_per_s": sps * rng.lognormal(0, noise),
                    "peak_rss_mib": 800.0,
                    "input_wait_share": 0.1,
                    "first_step_s": 0.5,
                    "cores_busy": 1.5,
                }
            rec = {"role": role, "round": r, "phases": phases}
            if r == 0 and role in ("base", "candidate"):
                rec["disk"] = {"log_bytes": 300 if role == "base" else 1200, "checkpoint_bytes": 10_000}
            out.append(rec)
    return out


def verdicts(recs: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in assess_claims(load_claims(), recs, ALT.knobs(), NEU.knobs())}


def test_known_ratios_get_the_right_verdicts():
    rows = verdicts(records())
    expected = {
        "V1": "holds",
        "V2": "holds",
        "V3": "refuted",
        "V4": "exceeded",
        "T1": "holds",
        "T2": "holds",
        "T3": "holds",
        "T4": "refuted",
        "M1": "holds",
        "M2": "exceeded",
        "M3": "holds",
        "M4": "holds",
    }
    assert {k: rows[k]["verdict"] for k in expected} == expected
    assert rows["V1"]["measured"]["estimate"] == pytest.approx(8.0, rel=0.03)
    assert rows["Q1"]["verdict"] == "pending" and rows["Q1"]["reason"]
    assert rows["H1"]["verdict"] == "not measured" and "--suite hpo" in rows["H1"]["reason"]


def test_product_row_multiplies_the_measured_factors():
    rows = verdicts(records())
    # 2.5 x 0.625 x 2 = 3.125, far below the claimed 7.5.
    assert rows["V5"]["measured"]["estimate"] == pytest.approx(3.125, rel=0.03)
    assert rows["V5"]["verdict"] == "refuted"


def test_failed_worker_leaves_the_claim_not_measured_with_the_error():
    rows = verdicts(records(fail="base+loader"))
    assert rows["T2"]["verdict"] == "not measured"
    assert "boom" in rows["T2"]["reason"]


def test_knob_shared_by_both_paths_is_not_measured_and_says_so():
    rows = {r["id"]: r for r in assess_claims(load_claims(), records(), ALT.knobs(), ALT.knobs())}
    assert rows["T4"]["verdict"] == "not measured"
    assert "share clip_norm=None" in rows["T4"]["reason"]


def test_validation_rows_show_samples_and_loss_noise_beside_the_time():
    rows = verdicts(records())
    assert "samples/pass" in rows["V2"]["reason"] and "stderr" in rows["V2"]["reason"]


def test_ablations_are_derived_from_the_two_paths():
    names = [r.name for r in ablation_roles(ALT, NEU)]
    assert names == [  # in TrainingPath's field order
        "base+train_compile",
        "base+val_compile",
        "base+loader",
        "base+clip_norm",
        "base+val_batches",
        "base+val_batch_size",
        "candidate+xla",
    ]
    loader = ablation_roles(ALT, NEU)[2]
    assert (loader.reference, loader.knobs, loader.phases) == ("base", ("loader",), ("train",))
    both = [r.name for r in ablation_roles(ALT, NEU, both_ways=True)]
    assert "candidate-loader" in both
    xla = [r for r in plan_roles(ALT, NEU) if r.name == "candidate+xla"][0]
    assert xla.path.train_compile == "xla" and xla.path.loader == "prefetch"


def test_ablation_rows_compare_each_variant_with_its_reference():
    roles = [r.record() for r in plan_roles(ALT, NEU)]
    rows = {(r["role"], r["phase"]): r for r in ablation_rows(records(), roles)}
    assert rows[("base+train_compile", "train")]["ratio"]["estimate"] == pytest.approx(1.5, rel=0.03)
    assert rows[("candidate+xla", "train")]["ratio"] is None  # not in the synthetic records
