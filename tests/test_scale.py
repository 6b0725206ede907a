"""The scale suite's record, table and plot (bench/scale.py), from synthetic speed results."""

from __future__ import annotations

from bench.report_tables import scale_tables
from bench.scale import PLOTTED, SCALE_PRESETS, entry, params_of, plot, table


def row(cid: str, estimate: float, verdict: str) -> dict:
    return {
        "id": cid,
        "family": "training" if cid.startswith("T") else "validation",
        "text": f"claim {cid}",
        "claimed": 2.4,
        "verdict": verdict,
        "measured": {"estimate": estimate, "low": estimate * 0.9, "high": estimate * 1.1, "n": 5},
    }


def speed(params: int, rounds: int) -> dict:
    records = [{"role": "base", "params": params}, {"role": "candidate", "params": params}, {"error": "x"}]
    return {"records": records, "sequential": {"rounds": rounds, "stop": "decided: ...", "confidence": 0.99}}


def scale_record() -> dict:
    sizes = {"tiny": 20_000, "small": 900_000, "seed": 14_000_000}
    presets = []
    for i, preset in enumerate(SCALE_PRESETS):
        rows = [row(cid, 12.0 / (i + 1), "exceeded") for cid in PLOTTED]
        rows.append({"id": "M1", "family": "memory", "verdict": "holds", "measured": None, "claimed": 1.0})
        presets.append(entry(preset, speed(sizes[preset], 5 + i), rows))
    return {"presets": presets}


def test_each_preset_keeps_its_size_its_stop_and_only_its_speed_rows():
    scale = scale_record()
    first = scale["presets"][0]
    assert first["params"] == 20_000 and first["rounds"] == 5 and first["stop"].startswith("decided")
    assert [r["id"] for r in first["rows"]] == list(PLOTTED)  # M1 is a whole-process claim, not scale's
    assert params_of([{"error": "worker died"}]) is None


def test_the_table_gives_a_cell_per_claim_and_preset_with_its_size_in_the_header():
    columns, rows = table(scale_record())
    assert columns[:2] == ("id", "claimed") and columns[2].startswith("tiny (20k params, n=5)")
    assert columns[4].startswith("seed (14M params, n=7)")
    assert rows[0][0] == "T1" and rows[0][2] == "12x [10.8, 13.2] exceeded" and rows[0][4].startswith("4x")


def test_a_result_with_a_scale_record_renders_its_table_and_plot(tmp_path):
    scale = scale_record()
    [(title, columns, rows, note)] = scale_tables({"scale": scale})
    assert title.startswith("Scale") and len(rows) == len(PLOTTED)
    png = tmp_path / "scale.png"
    plot(scale, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert scale_tables({"scale": None}) == []
