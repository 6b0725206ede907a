from __future__ import annotations

import pytest

from bench.claims import load_claims
from diffusion.errors import ConfigError

DESIGN_IDS = "V1 V2 V3 V4 V5 T1 T2 T3 T4 M1 M2 M3 M4 H1 H2 H3 H4 Q1 Q2 Q3 Q4 Q5 P1 P2 P3 S1 S2 S3 S4 C1".split()


def test_registry_holds_every_claim_of_the_design_in_order():
    assert [c.id for c in load_claims()] == DESIGN_IDS


SEARCH_SUITE = {"H1", "H2", "H3", "S1", "S4"}


def test_speed_memory_and_search_claims_are_measured_and_the_rest_pending_with_reasons():
    for claim in load_claims():
        if claim.id[0] in "VTM":
            assert (claim.status, claim.suite) == ("measured", "speed"), claim.id
        elif claim.id in SEARCH_SUITE:
            assert (claim.status, claim.suite) == ("measured", "hpo"), claim.id
        else:
            assert claim.status == "pending" and claim.reason, claim.id


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
        ('id="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"\ncolour="red"', "colour"),
    ],
)
def test_invalid_registry_rows_are_rejected_with_the_value(tmp_path, row, message):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]]\n" + row + "\n")
    with pytest.raises(ConfigError, match=message):
        load_claims(path)


def test_duplicate_ids_are_rejected(tmp_path):
    row = '[[claim]]\nid="X1"\nfamily="validation"\ntext="t"\nclaimed=2.0\nmetric="val_pass_s"\n'
    path = tmp_path / "claims.toml"
    path.write_text(row + row)
    with pytest.raises(ConfigError, match="unique"):
        load_claims(path)
