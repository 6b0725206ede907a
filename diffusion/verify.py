"""Verify a trained model: ``python -m diffusion.verify --checkpoint DIR [--events N] [--json F] [--plots DIR]``.

Generates events for the truth of held-out simulated events (DDIM), and scores them against
those simulated events; the same metrics for a second, independent simulation of the same
truth give the ceiling. Definitions: ``diffusion/quality.py`` and the README. The checkpoint
is verified with NumPy before TensorFlow loads, so a missing or corrupt one answers at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.cli import SEED, Parser, bounded, check_writable_dir, check_writable_file, load_backend, run
from diffusion.errors import ConfigError
from diffusion.files import write_json_atomic
from diffusion.outputs import check_outputs

SCHEMA = "pmt-bench/verify/1"
PLOT_NAMES = ("observables.png", "hit_maps.png", "selection.png")  # what --plots gets
VERIFY_SEED_OFFSET = 2_000_003  # held out: never a training or validation seed
# The stages verify() reports as it finishes them (selection and plots only when asked for).
STAGES = ("setup", "simulation", "generation", "observables", "classifier", "validation loss")


def stages(*, selection: bool, plots: bool) -> tuple[str, ...]:
    """The stages of one verification, in order."""
    return STAGES + ("selection",) * selection + ("plots",) * plots


@dataclass(frozen=True)
class Metric:
    """How one verification metric reads."""

    name: str
    better: str  # "higher", "lower", or "nearer 0.5" (an AUC below 0.5 tells the sets apart too)
    definition: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "val_loss",
        "lower",
        "mean MSE of the model's target (v; the noise for eps models) on the preset's whole fixed validation set",
    ),
    Metric("fidelity", "higher", "1 - mean separation power over 5 observables x 3 energy bins"),
    Metric("classifier_auc", "nearer 0.5", "held-out AUC of a small MLP telling the set from simulated (0.5: cannot)"),
    Metric("physics_score", "higher", "share of physical events / the same share for simulated events"),
    Metric("multiplicity_success", "higher", "share of events whose counted rings equal their true rings"),
    Metric("energy_violation", "lower", "share outside the simulated central 99% of charge per MeV, per energy bin"),
)


# --events, --steps and --permutations are capped at 1000 to 200 times their defaults, so a
# mistyped count is refused instead of running until someone kills it.
def build_parser() -> Parser:
    parser = Parser(prog="python -m diffusion.verify", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="run directory or checkpoint.npz")
    parser.add_argument(
        "--events", type=bounded(int, low=20, high=1_000_000), default=1000, help="events to generate (default 1000)"
    )
    parser.add_argument(
        "--steps", type=bounded(int, low=1, high=10_000), default=50, help="DDIM denoising steps (default 50)"
    )
    parser.add_argument("--seed", type=SEED, default=0, help="seeds truth, simulation and sampling (default 0)")
    parser.add_argument(
        "--select", type=bounded(int, low=1), help="PMTs to select by Shapley value (default min(300, PMTs / 2))"
    )
    parser.add_argument(
        "--trigger-k", type=bounded(int, low=1), default=3, help="hits among selected PMTs to trigger (default 3)"
    )
    parser.add_argument(
        "--permutations",
        type=bounded(int, low=2, high=1_000_000),
        default=1000,
        help="Shapley permutations (default 1000)",
    )
    parser.add_argument("--no-selection", action="store_true", help="skip the PMT selection study")
    parser.add_argument("--json", type=Path, help="write the record here")
    parser.add_argument("--plots", type=Path, help="write PNGs into this directory")
    parser.add_argument(
        "--no-progress", action="store_true", help="no bar on a terminal, no line per finished stage when piped"
    )
    return parser


def check_args(events: int, steps: int, select: int | None, trigger_k: int, permutations: int) -> None:
    if select is not None and select < 1:
        raise ConfigError(f"--select must be at least 1, but got {select}.")
    if trigger_k < 1:
        raise ConfigError(f"--trigger-k must be at least 1, but got {trigger_k}.")
    if permutations < 2 or permutations % 2:
        raise ConfigError(f"--permutations must be even and at least 2 (antithetic pairs), but got {permutations}.")
    if events < 20:
        raise ConfigError(f"--events must be at least 20 (two halves for the classifier), but got {events}.")
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, but got {steps}.")


def default_select(n_pmt: int) -> int:
    """The report's 300 PMTs where the detector has enough; half the PMTs where it has not."""
    return min(300, n_pmt // 2)


def selection_study(
    generator: Any,
    detector: Any,
    visible: Any,
    rng: np.random.Generator,
    *,
    events: int,
    select: int,
    k: int,
    permutations: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Choose ``select`` PMTs by Shapley value from generated trigger-sample events (2-15 MeV,
    one ring, inside the training energies) and measure the detection rate of that choice on independent simulated events.

    Returns the record and the selections (for the plot). Beside it: the same choice made
    from simulated events of the same truth (what a perfect model would give), greedy
    coverage and hit frequency on the generated events, a random choice, and every PMT.
    ``visible`` applies the decoder's hit threshold to simulated events. ``model_s`` in the
    record is what a user's selection costs per model: generating the events and sampling.
    """
    from diffusion import selection
    from diffusion.detector import TRIGGER_EVENTS

    truth = detector.sample_truth(rng, events, TRIGGER_EVENTS)
    made = generator.generate(truth, steps=generator.steps, rng=rng)
    generated = made.events.hit
    simulated = visible(detector.respond(rng, truth)).hit
    evaluation = visible(detector.simulate(rng, events, TRIGGER_EVENTS)).hit
    first = selection.sampled_shapley(generated, k, permutations=permutations, rng=rng)
    second = selection.sampled_shapley(generated, k, permutations=permutations, rng=rng)
    top = max(1, select // 3)  # the report's top-100 of 300
    choices = {
        "shapley_generated": selection.top_by_value(first.values, select),
        "shapley_simulated": selection.top_by_value(selection.exact_shapley(simulated, k), select),
        "greedy_generated": selection.greedy_coverage(generated, k, select),
        "frequency_generated": selection.hit_frequency(generated, select),
        "random": selection.random_selection(detector.config.n_pmt, select, rng),
    }
    record = {
        "events": events,
        "select": select,
        "trigger_k": k,
        "permutations": permutations,
        "note": energy_note(TRIGGER_EVENTS, generator.preset.events),
        "detection_rate": {name: selection.detection_rate(evaluation, idx, k) for name, idx in choices.items()},
        "detection_rate_all_pmts": selection.detection_rate(evaluation, np.arange(detector.config.n_pmt), k),
        "selection_s": first.seconds,
        "generation_s": made.seconds,
        "model_s": made.seconds + first.seconds,
        "top": top,
        "top_overlap": selection.top_overlap(
            selection.top_by_value(first.values, select), selection.top_by_value(second.values, select), top
        ),
        "chance_overlap": selection.chance_overlap(detector.config.n_pmt, top),
    }
    return record, choices


def energy_note(trigger: Any, training: Any) -> str:
    """Where the trigger sample's energies lie against the training events' (per ring)."""
    (lo, hi), (train_lo, train_hi) = trigger.energy_range_mev, training.energy_range_mev
    where = "inside" if train_lo <= lo and hi <= train_hi else "outside (the model extrapolates)"
    return f"trigger sample {lo:g}-{hi:g} MeV, one ring: {where} the {train_lo:g}-{train_hi:g} MeV per ring of training"


def validation_loss(generator: Any, validation: Any, batch: int = 512) -> float:
    """Mean MSE of the model's regression target (what it trained on: v, or the noise) over the
    whole fixed validation set (every path's superset): the loss the trainer validates with."""
    prediction = generator.preset.diffusion.prediction
    total = 0.0
    for lo in range(0, len(validation), batch):
        s = slice(lo, lo + batch)
        x_t, t = validation.x_t[s], validation.t[s]
        out = generator.predict(x_t, t, validation.cond[s])
        total += float(np.sum((out - generator.schedule.target(prediction, x_t, t, validation.noise[s])) ** 2))
    return total / (len(validation) * validation.x_t.shape[1])


def verify(
    checkpoint: Path,
    *,
    events: int = 1000,
    steps: int = 50,
    seed: int = 0,
    plots: Path | None = None,
    on_progress: Any = None,
    select: int | None = None,
    trigger_k: int = 3,
    permutations: int = 1000,
    selection: bool = True,
    on_stage: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Generate, score, and return the verification record (see ``METRICS``).

    Args:
        on_progress: ``on_progress(events generated so far)`` after each generated batch.
        on_stage: ``on_stage(stage, what it found)`` as each of ``stages(...)`` finishes.

    Raises:
        CheckpointError: missing or corrupt checkpoint, or one that does not fit its model.
    """
    from diffusion import quality
    from diffusion.data import prepare
    from diffusion.detector import Detector
    from diffusion.generate import Generator, read_checkpoint
    from diffusion.rings import count_rings, success_rate
    from diffusion.two_sample import classifier_auc

    stage = on_stage or (lambda name, detail: None)
    start = time.perf_counter()
    ckpt, preset = read_checkpoint(checkpoint)
    data = prepare(preset)
    generator = Generator(ckpt, preset, data.normaliser, data.schedule, steps=steps)
    detector = Detector(preset.detector)
    stage("setup", f"{preset.name} model of epoch {ckpt.meta.get('epoch')}, {preset.detector.n_pmt} PMTs")
    rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, seed])
    truth = detector.sample_truth(rng, events, preset.events)
    # Simulated events are scored as the decoder can show them (no hits below its threshold),
    # or a perfect model could never reach the ceiling.
    visible = data.normaliser.visible
    simulated = visible(detector.respond(rng, truth))
    independent = visible(detector.respond(rng, truth))
    stage("simulation", f"{events} truths simulated twice (the ceiling)")
    generated = generator.generate(truth, steps=steps, rng=rng, on_batch=on_progress)
    rate = events / generated.seconds if generated.seconds > 0 else float("inf")
    stage("generation", f"{events} x {steps} DDIM steps, {rate:.0f} events/s incl. tracing")

    bins = quality.energy_bins(truth.energy.sum(axis=1))
    obs = {
        "simulated": quality.observables(simulated, detector),
        "generated": quality.observables(generated.events, detector),
        "independent": quality.observables(independent, detector),
    }
    physics = {
        "simulated": quality.physical(obs["simulated"], detector),
        "generated": quality.physical(obs["generated"], detector, generated.raw_min_charge),
        "independent": quality.physical(obs["independent"], detector),
    }
    sim_physical = max(float(physics["simulated"]["all"].mean()), 1e-12)
    rings = {
        "generated": count_rings(generated.events.charge, detector.positions, truth.vertex),
        "independent": count_rings(independent.charge, detector.positions, truth.vertex),
    }
    encode = data.normaliser.encode
    separation = {k: quality.separation_table(obs["simulated"], obs[k], bins) for k in ("generated", "independent")}
    fidelity = {k: quality.fidelity(table) for k, table in separation.items()}
    stage("observables", f"fidelity {fidelity['generated']:.3f} (ceiling {fidelity['independent']:.3f})")
    scored = {"generated": generated.events, "independent": independent}
    auc = {k: classifier_auc(encode(simulated), encode(scored[k]), seed=seed) for k in scored}
    stage("classifier", f"AUC {auc['generated']:.3f} (ceiling {auc['independent']:.3f}; 0.5: cannot tell)")
    metrics: dict[str, dict[str, float | None]] = {}
    for key, label in (("generated", "generated"), ("independent", "ceiling")):
        events_k = scored[key]
        values = {
            "fidelity": fidelity[key],
            "classifier_auc": auc[key],
            "physics_score": float(physics[key]["all"].mean()) / sim_physical,
            "multiplicity_success": success_rate(truth.multiplicity, rings[key]),
            "energy_violation": quality.energy_violation(simulated, events_k, bins),
        }
        for name, value in values.items():
            metrics.setdefault(name, {})[label] = value
    val_loss = validation_loss(generator, data.validation)
    stage("validation loss", f"{val_loss:.4f} over {len(data.validation)} samples")
    metrics = {"val_loss": {"generated": val_loss, "ceiling": None}, **metrics}
    chosen: dict[str, np.ndarray] = {}
    pmt_selection = None
    if selection:
        pmt_selection, chosen = selection_study(
            generator,
            detector,
            visible,
            rng,
            events=events,
            select=select or default_select(preset.detector.n_pmt),
            k=trigger_k,
            permutations=permutations,
        )
        rates = pmt_selection["detection_rate"]
        stage(
            "selection",
            f"{pmt_selection['select']} PMTs detect {rates['shapley_generated']:.3f} "
            f"(all {pmt_selection['detection_rate_all_pmts']:.3f}, random {rates['random']:.3f})",
        )
    if plots is not None:
        from diffusion.selection_plot import plot_selection
        from diffusion.verify_plots import plot_hit_maps, plot_observables

        observables, hit_maps, selection = (plots / name for name in PLOT_NAMES)
        plot_observables(obs, observables)
        plot_hit_maps(detector, {"simulated": simulated, "generated": generated.events}, hit_maps)
        if chosen:
            plot_selection(detector.unit, chosen, selection)
        stage("plots", f"{len(list(plots.glob('*.png')))} PNGs in {plots}")
    meta = ckpt.meta
    return {
        "schema": SCHEMA,
        "checkpoint": str(checkpoint),
        "preset": preset.name,
        "model": asdict(preset.model),
        "path": meta.get("path"),
        "epoch": meta.get("epoch"),
        "train_seed": meta.get("seed"),
        "events": events,
        "steps": steps,
        "seed": seed,
        "metrics": metrics,
        "definitions": {m.name: {"definition": m.definition, "better": m.better} for m in METRICS},
        "separation": separation,
        "physics": {k: {check: float(v.mean()) for check, v in p.items()} for k, p in physics.items()},
        "selection": pmt_selection,
        "generation_s": generated.seconds,
        # What verifying a model costs a user: generating its events, and the PMT selection;
        # the simulated ceiling and the baselines are this tool's extra work, not the phase's.
        "model_s": generated.seconds + (pmt_selection["model_s"] if pmt_selection else 0.0),
        "wall_s": time.perf_counter() - start,
        "plots": sorted(str(p) for p in plots.glob("*.png")) if plots is not None else [],
    }


def render(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"verification: {record['checkpoint']} ({record['events']} events, {record['steps']} DDIM steps)"
    )
    for column in ("metric", "generated", "ceiling (simulated vs simulated)", "better"):
        table.add_column(column)
    for metric in METRICS:
        values = record["metrics"][metric.name]
        ceiling = values["ceiling"]
        table.add_row(
            metric.name,
            f"{values['generated']:.4g}",
            "-" if ceiling is None else f"{ceiling:.4g}",
            metric.better,
        )
    console = Console(width=120)
    console.print(table)
    sel = record.get("selection")
    if sel:
        rates = ", ".join(f"{name} {rate:.3f}" for name, rate in sel["detection_rate"].items())
        console.print(
            f"PMT selection ({sel['select']} PMTs, >= {sel['trigger_k']} hits, {sel['events']} trigger events): "
            f"detection rate {rates}; all PMTs {sel['detection_rate_all_pmts']:.3f}. "
            f"Shapley sampling {sel['selection_s']:.2f} s; top-{sel['top']} overlap of two runs "
            f"{sel['top_overlap']:.2f} (chance {sel['chance_overlap']:.2f})."
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffusion.generate import checkpoint_file, read_checkpoint

    plots = [(f"--plots's {name}", args.plots / name if args.plots is not None else None) for name in PLOT_NAMES]
    check_outputs([("--json", args.json), *plots], [("--checkpoint", checkpoint_file(args.checkpoint))])
    check_args(args.events, args.steps, args.select, args.trigger_k, args.permutations)
    if args.json is not None:
        check_writable_file(args.json, "--json")
    if args.plots is not None:
        check_writable_dir(args.plots, "--plots")

    _, preset = read_checkpoint(args.checkpoint)  # NumPy only: a bad checkpoint answers before TensorFlow loads
    if args.select is not None and args.select > preset.detector.n_pmt:
        raise ConfigError(f"--select must be at most the {preset.detector.n_pmt} PMTs, but got {args.select}.")
    select = args.select if args.select is not None else default_select(preset.detector.n_pmt)
    if not args.no_selection and args.trigger_k > select:  # no event could trigger: a detection rate of 0 by rule
        raise ConfigError(
            f"--trigger-k must be at most the {select} selected PMTs (--select), but got {args.trigger_k}."
        )
    load_backend()  # it builds the model next
    from diffusion.progress import StageProgress, say

    planned = stages(selection=not args.no_selection, plots=args.plots is not None)
    with StageProgress("verify", len(planned), disable=args.no_progress) as progress:
        record = verify(
            args.checkpoint,
            events=args.events,
            steps=args.steps,
            seed=args.seed,
            plots=args.plots,
            on_progress=lambda done: progress.items_done("generating events", done, args.events),
            select=args.select,
            trigger_k=args.trigger_k,
            permutations=args.permutations,
            selection=not args.no_selection,
            on_stage=progress.done,
        )
    if not progress.console.is_terminal:  # a log still says what ran and how long it took
        say(f"verified: {args.events} events in {record['wall_s']:.1f} s, {args.checkpoint}")
    from diffusion.environment import environment

    record["environment"] = environment(preset=record["preset"])
    render(record)
    if args.json is not None:
        write_json_atomic(args.json, record)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
