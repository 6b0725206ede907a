from __future__ import annotations

import pytest

from bench.claims import load_claims
from bench.suites import load_registry
from diffusion.errors import ConfigError

DESIGN_IDS = "V1 V2 V3 V4 V5 T1 T2 T3 T4 M1 M2 M3 M4 H1 H2 H3 H4 Q1 Q2 Q3 Q4 Q5 P1 P2 P3 S1 S2 S3 S4 C1".split()
# Statements of the seed report beyond DESIGN's table: products, restatements, the summary's
# and the workflow's figures, the scaling scenarios' rows.
MORE_IDS = "T5 H1j H3j H5 H6 W1 W2 W3 W4 Q6 Q7 S5 S3b S3c S6 S7".split()


def test_registry_holds_every_claim_of_the_design_and_every_other_statement_of_the_report():
    ids = [c.id for c in load_claims()]
    assert [i for i in ids if i in DESIGN_IDS] == DESIGN_IDS
    assert sorted(set(ids) - set(DESIGN_IDS)) == sorted(MORE_IDS)
    assert len(ids) >= 35
    assert all(c.source for c in load_claims())


SEARCH_SUITE = {"H1", "H1j", "H2", "H3", "H3j", "H5", "H6", "S1", "S4"}
GPU_SUITE = {"S3", "S3b", "S3c"}
SCALING_SUITE = {"S2"}
QUALITY_SUITE = {"Q1", "Q2", "Q3", "Q4", "Q5", "P1", "P2", "P3", "H4", "W1", "W2", "W3", "W4", "C1"}
NOT_APPLICABLE = {"Q7"}


def test_speed_memory_and_search_claims_are_measured_and_the_rest_have_reasons():
    for claim in load_claims():
        if claim.id in NOT_APPLICABLE:
            assert claim.status == "not applicable" and claim.reason, claim.id
        elif claim.id[0] in "VTM":
            assert (claim.status, claim.suite) == ("measured", "speed"), claim.id
        elif claim.id in SEARCH_SUITE:
            assert (claim.status, claim.suite) == ("measured", "hpo"), claim.id
        elif claim.id in GPU_SUITE:
            assert (claim.status, claim.suite) == ("measured", "gpu"), claim.id
        elif claim.id in SCALING_SUITE:
            assert (claim.status, claim.suite) == ("measured", "scaling"), claim.id
        elif claim.id in QUALITY_SUITE:
            assert (claim.status, claim.suite) == ("measured", "quality"), claim.id
        else:
            assert claim.status == "pending" and claim.reason, claim.id


def test_claimed_values_are_the_reports_and_a_restatement_is_its_own_row():
    claims = {c.id: c for c in load_claims()}
    assert claims["H1"].claimed_here(jobs=2) == 4.0
    assert claims["H1j"].claimed_here(jobs=2) == 2.0
    assert claims["H3j"].claimed_here(jobs=2) == pytest.approx(2.85)


def test_memory_claims_name_their_verdict_reading_and_the_one_beside_it():
    claims = {c.id: c for c in load_claims()}
    assert (claims["M1"].metric, claims["M1"].beside) == ("train_rss_growth_mib", "train_peak_rss_mib")
    assert (claims["M2"].metric, claims["M2"].beside) == ("val_rss_growth_mib", "val_peak_rss_mib")
    assert (claims["V3"].metric, claims["V3"].beside) == ("val_samples_per_s", "val_pass_s")


def test_equal_and_plus_25_percent_memory_bands_do_not_overlap():
    from bench.stats import claim_band

    claims = {c.id: c for c in load_claims()}
    m1 = claim_band(claims["M1"].claimed, claims["M1"].tolerance, claims["M1"].margin)
    m2 = claim_band(claims["M2"].claimed, claims["M2"].tolerance, claims["M2"].margin)
    assert m2[1] < m1[0]


def test_factor_claims_name_the_knob_they_ablate():
    factors = {c.id: c.factor for c in load_claims() if c.factor}
    assert factors == {
        "V2": ("val_batches",),
        "V3": ("val_batch_size",),
        "V4": ("val_compile",),
        "T2": ("loader",),
        "T3": ("train_compile",),
        "T4": ("clip_norm",),
    }
    products = {c.id: c.product_of for c in load_claims() if c.product_of}
    assert products == {"V5": ("V2", "V3", "V4"), "T5": ("T2", "T3", "T4")}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('id="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="speed"', "`metric` must be one of"),
        ('id="X1"\nfamily="fun"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"', "`family` must be one of"),
        ('id="X1"\nfamily="validation"\ntext="t"\nclaimed=-1\nmetric="val_pass_s"', "`claimed` must be positive"),
        (
            'id="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"\nfactor=["warp"]',
            "unknown knob 'warp'",
        ),
        ('id="X1"\nfamily="search"\ntext="t"\nclaimed=2.0\nstatus="pending"', "needs a `reason`"),
        ('id="X1"\nfamily="search"\ntext="t"\nclaimed=2.0\nkind="vibes"', "`kind` must be one of"),
        ('id="X1"\nfamily="search"\ntext="t"\nclaimed=2.0\nrescale="nodes"', "`rescale` must be one of"),
        ('id="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"\ncolour="red"', "colour"),
    ],
)
def test_invalid_registry_rows_are_rejected_with_the_value(tmp_path, row, message):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]]\n" + row + "\n")
    with pytest.raises(ConfigError, match=message):
        load_registry(path)  # the registry's own checks, then those of the suite table


def test_duplicate_ids_are_rejected(tmp_path):
    row = '[[claim]]\nid="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"\n'
    path = tmp_path / "claims.toml"
    path.write_text(row + row)
    with pytest.raises(ConfigError, match="unique"):
        load_claims(path)


def test_a_claims_suite_and_metric_are_checked_against_the_suite_table(tmp_path):
    row = '[[claim]]\nid="X1"\nfamily="search"\ntext="t"\nclaimed=2.0\nsuite="{suite}"\nmetric="{metric}"\n'
    path = tmp_path / "claims.toml"
    path.write_text(row.format(suite="hpo", metric="val_pass_s"))
    with pytest.raises(ConfigError, match="`metric` must be one of hpo_thread_speedup"):
        load_registry(path)  # a speed metric is no search reading
    path.write_text(row.format(suite="warp", metric="val_pass_s"))
    with pytest.raises(ConfigError, match="`suite` must be one of speed, hpo, scaling, quality, scale, gpu"):
        load_registry(path)
    path.write_text(row.format(suite="hpo", metric="hpo_thread_speedup"))
    assert [c.id for c in load_registry(path)] == ["X1"]
