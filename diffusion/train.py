"""Train the PMT denoiser along one path: ``python -m diffusion.train --path SPEC --preset P ...``.

Arguments are checked before TensorFlow loads, so a bad one answers at once.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from diffusion.checkpoint import CHECKPOINT_NAME, check_identity, load_checkpoint
from diffusion.cli import (
    FRAMEWORK_LOGS,
    SEED,
    Parser,
    bounded,
    check_writable_dir,
    check_writable_file,
    load_backend,
    run,
)
from diffusion.errors import ConfigError, TrainingDiverged
from diffusion.files import write_json_atomic
from diffusion.outputs import check_outputs
from diffusion.paths import format_path, parse_path
from diffusion.presets import PRESETS, get_preset
from diffusion.tracking import METRICS_NAME, check_tracking


# --epochs stops at 10000, thousands of times any run here (default 3): a larger count is a typo.
def build_parser() -> Parser:
    parser = Parser(prog="python -m diffusion.train", description=__doc__.splitlines()[0], epilog=FRAMEWORK_LOGS)
    parser.add_argument("--path", default="neu", help="path spec, e.g. alt, neu, neu:train_compile=xla (default neu)")
    parser.add_argument("--preset", default="small", help=f"one of {', '.join(PRESETS)} (default small)")
    parser.add_argument(
        "--epochs", type=bounded(int, low=1, high=10_000), default=3, help="total epochs to reach (default 3)"
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory: checkpoint and metrics")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--json", type=Path, help="write a summary record here (default: none)")
    parser.add_argument("--seed", type=SEED, default=0, help="seeds weights and batch order (default 0)")
    parser.add_argument(
        "--config",
        type=Path,
        help="best.json from `python -m diffusion.hpo best`: its parameters apply (default: the preset's and path's)",
    )
    parser.add_argument(
        "--target-loss",
        type=bounded(float, positive=True),
        help="stop after the first epoch whose validation loss is at or below this (default: run every epoch)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress: neither the bar (on a terminal) nor the line per epoch (when piped)",
    )
    return parser


def check_resume(out: Path, resume: bool, preset: str, model: dict, path_knobs: dict, seed: int) -> str | None:
    """Refuse to overwrite a checkpoint; on resume, verify it (NumPy only, before TF loads)."""
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.exists():
        return f"no checkpoint in {out}; starting a new run." if resume else None
    if not resume:
        raise ConfigError(
            f"{str(out)!r} already holds a checkpoint; pass --resume to continue it or choose another --out."
        )
    mine = {"preset": preset, "model": model, "path": path_knobs, "seed": seed}
    check_identity(load_checkpoint(ckpt).meta, mine, where=f"checkpoint in {str(out)!r}")
    return None


def check_paths(args: Any) -> None:
    """--out is a run directory whose checkpoint this command reads (on --resume) and rewrites, and
    whose metrics log it appends to: --json may be neither, nor the --config it reads."""
    run_files = [(f"--out's {name}", args.out / name) for name in (CHECKPOINT_NAME, METRICS_NAME)]
    check_outputs([*run_files, ("--json", args.json)], [("--config", args.config)])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_paths(args)
    path = parse_path(args.path)
    preset = get_preset(args.preset)
    if args.config is not None:
        from diffusion.hpo.space import apply_params, load_best

        preset, path = apply_params(preset, path, load_best(args.config)["params"])
    check_tracking(path.tracking)
    check_writable_dir(args.out, "--out")
    if args.json is not None:
        check_writable_file(args.json, "--json")
    note = check_resume(args.out, args.resume, preset.name, dataclasses.asdict(preset.model), path.knobs(), args.seed)
    if note:
        print(note, file=sys.stderr)

    load_backend()  # it trains next: the backend loads now, its start-up lines filtered
    from diffusion.progress import TrainingProgress
    from diffusion.trainer import Trainer, fit

    trainer = Trainer(preset, path, seed=args.seed)
    title = f"{format_path(path)} @ {preset.name}"
    with TrainingProgress(
        args.epochs, trainer.steps_per_epoch, path.batch_size, title=title, disable=args.no_progress
    ) as progress:
        progress.start_at(trainer.epoch)
        try:
            result = fit(
                trainer,
                args.epochs,
                args.out,
                resume=args.resume,
                on_step=progress.on_step,
                on_epoch=progress.on_epoch,
                target_loss=args.target_loss,
            )
        except TrainingDiverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    summary = summarise(result, trainer, args.epochs)
    progress.print_summary(summary)
    if args.json is not None:
        write_json_atomic(args.json, summary)
    return 0


def summarise(result: Any, trainer: Any, epochs: int) -> dict[str, Any]:
    from diffusion.environment import environment

    last = result.history[-1] if result.history else {}
    return {
        "schema": 1,
        "path": trainer.path.knobs(),
        "path_spec": format_path(trainer.path),
        "preset": trainer.preset.name,
        "model": dataclasses.asdict(trainer.preset.model),
        "epochs": epochs,
        "epochs_run": len(result.history),
        "seed": trainer.seed,
        "train_samples_per_s": last.get("train_samples_per_s"),
        "input_wait_share": last.get("input_wait_share"),
        "val_loss": last.get("val_loss"),
        "val_loss_stderr": last.get("val_loss_stderr"),
        "val_pass_s": last.get("val_pass_s"),
        "first_step_s": result.first_step_s,
        "first_val_pass_s": result.first_val_pass_s,
        "traces": dict(trainer.stepper.traces) if trainer.path.train_compile != "eager" else None,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "history": result.history,
        "environment": environment(preset=trainer.preset.name, loader_impl=trainer.loader.implementation),
    }


if __name__ == "__main__":
    run(main)
