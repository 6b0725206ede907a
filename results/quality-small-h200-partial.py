"""The part of the quality suite at `small` that fitted the device time of one H200 session.

The whole suite at `small` starts with ALT's search (20 trials x 6 epochs, sequential, on the
eager ALT path), which no 10-minute device call finishes, and a job cut midway starts afresh:
run as it is, the suite would finish no job at all. This driver runs, with the suite's own job
functions and job names in its own work directory (a later full run of the same code reuses
them), the jobs of one seed that need no ALT search, cheapest first:

    seed 0: NEU search -> NEU final training (30 epochs of the best trial) -> NEU verification,
            then ALT final training (5 epochs of the default model) -> ALT verification

and renders the record through ``bench.compare`` (its quality measurement replaced by this
one), so every claim the missing jobs feed reads "not measured" and the verification table
shows both final models beside the simulated ceiling. Not run: ALT's search, seeds 1 and 2,
time to quality. Usage (a device call, from the repository root):

    python results/quality-small-h200-partial.py alt neu --suite quality --preset small \\
        --quality-seeds 1 --work-dir W --json F.json --markdown F.md
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.quality as quality  # noqa: E402

# QUALITY_ROLES=candidate renders what is finished without starting ALT's final training.
ROLES = os.environ.get("QUALITY_ROLES", "base,candidate").split(",")
NOT_RUN_ALT = "not run: ALT's final training at small did not finish in this session's device time (cut after ~265 s)"
NOT_RUN = (
    "not run: ALT's search at small (20 trials x 6 epochs on the eager path) does not fit this session's device time"
)


def measure_partial(
    plan: quality.QualityPlan,
    base: Any,
    candidate: Any,
    work_dir: Path,
    on_job: Callable[[str, dict[str, Any], bool], None] | None = None,
) -> dict[str, Any]:
    """``bench.quality.measure_quality`` without ALT's search and time to quality."""
    work = quality.Work(work_dir / f"quality-{plan.preset.name}-{plan.digest(base, candidate)}")
    base_recipe, cand_recipe = quality.recipes(plan, base, candidate)
    start = time.perf_counter()

    def job(name: str, make: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        record, reused = work.job(name, make)
        if on_job is not None:
            on_job(name, record, reused)
        print(f"job {name}: {'reused' if reused else 'ran'}, wall {record.get('wall_s', 0):.1f} s", flush=True)
        return record

    rounds = []
    for seed in range(plan.seeds):
        recs: dict[str, Any] = {}
        for recipe in (cand_recipe, base_recipe):
            tag = f"seed{seed}-{recipe.role}"
            if recipe.role not in ROLES:
                recs[recipe.role] = {phase: {"error": NOT_RUN_ALT} for phase in ("search", "train", "verify")}
                continue
            if recipe.tuned or (work.directory / f"{tag}-search.json").exists():
                search = job(f"{tag}-search", quality.search_job(recipe, plan, seed))
            else:
                search = {"error": NOT_RUN}
            train = job(f"{tag}-train", quality.train_job(recipe, plan, seed, search.get("best_params")))
            verify = (
                job(f"{tag}-verify", quality.verify_job(plan, seed, work.directory / f"{tag}-train" / "run"))
                if "error" not in train
                else {"error": "no model: the final training failed"}
            )
            recs[recipe.role] = {"search": search, "train": train, "verify": verify}
        rounds.append({"seed": seed, "recipes": {"base": recs["base"], "candidate": recs["candidate"]}})
    return {
        "schema": quality.SCHEMA,
        "plan": plan.record(),
        "cores": len(os.sched_getaffinity(0)),
        "recipes": [r.record() for r in (base_recipe, cand_recipe)],
        "rounds": rounds,
        "ttq": {"error": "not run: time to quality needs ALT's verified models of every seed first"},
        "work_dir": str(work.directory),
        "wall_s": time.perf_counter() - start,
    }


# ---- how close each final model comes to the ceiling (appended to the rendered Markdown) ----


def ceiling_shares(result: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per metric and recipe: the final model's share over the ceiling's (1 = as good as a second
    simulation), by the suite's own ``ceiling_share``; metrics without a ceiling are left out."""
    from bench.quality_analysis import TO_SHARE, ceiling_share

    return {
        name: {role: ceiling_share(name, row.get(role), row["ceiling"]) for role in ("base", "candidate")}
        for name, row in result["quality"]["verification"]["metrics"].items()
        if name in TO_SHARE and row.get("ceiling") is not None
    }


def shares_markdown(result: dict[str, Any]) -> str:
    rows = result["quality"]["verification"]["metrics"]
    lines = [
        "## Final models against the ceiling (share of the ceiling; 1 = as good as a second simulation)",
        "",
        "| metric | ALT | ALT / ceiling | NEU | NEU / ceiling | ceiling (sim vs sim) |",
        "|---|---|---|---|---|---|",
    ]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    for name, share in ceiling_shares(result).items():
        row = rows[name]
        lines.append(
            f"| {name} | {fmt(row['base'])} | {fmt(share['base'])} | {fmt(row['candidate'])} | "
            f"{fmt(share['candidate'])} | {fmt(row['ceiling'])} |"
        )
    lines += [
        "",
        "share: value / ceiling for fidelity, physics_score and multiplicity_success; for classifier_auc "
        "(1 - |2 AUC - 1|) over the same of the ceiling; for energy_violation (1 - violation) over (1 - the "
        "ceiling's); val_loss has no ceiling. Made by results/quality-small-h200-partial.py --shares.",
        "",
    ]
    for rnd in result["quality"]["rounds"]:  # the physics score's three cuts, each model's share that passes
        for role, rec in rnd["recipes"].items():
            physics = (rec["verify"].get("record") or {}).get("physics")
            if physics:
                cuts = ", ".join(f"{k} {v:.3g}" for k, v in physics["generated"].items())
                sim = ", ".join(f"{k} {v:.3g}" for k, v in physics["simulated"].items())
                lines.append(
                    f"- seed {rnd['seed']} {role}: physical-event cuts passed, generated: {cuts}; simulated: {sim}"
                )
    lines.append("")
    return "\n".join(lines)


def append_shares(json_path: Path, md_path: Path) -> None:
    import json

    result = json.loads(json_path.read_text())
    result["quality_vs_ceiling"] = ceiling_shares(result)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(md_path.read_text().rstrip("\n") + "\n\n" + shares_markdown(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--shares"]:  # --shares JSON MD: append the table above to a rendered record
        append_shares(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    from bench import compare

    quality.measure_quality = measure_partial  # compare imports it from bench.quality when it runs
    sys.exit(compare.main(sys.argv[1:]))
