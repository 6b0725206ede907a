"""Why the final models sit far below the simulation ceiling: experiments that isolate each cause.

A device call (one GPU, Keras on JAX) from the repository root:

    python results/quality-diagnosis-h200.py --out DIR [--only NAME,...] [--events 1000]

Each experiment writes ``DIR/NAME.json`` as soon as it finishes, so a call cut at its time
limit keeps what it measured. Every score is the verification's own (``diffusion.quality``,
``diffusion.rings``) on the verification's own held-out truth (seed 0 of ``diffusion.verify``),
so the numbers compare with results/quality-small-h200.md. The classifier AUC is left out (it
is the slowest metric and no candidate cause turns on it).

Experiments (small preset; NEU's tuned model from results/quality-small-h200.json):

- ``data``: feature statistics: the share of PMTs at the "no light" point, the gap between it
  and the decoder's hit cut in feature units.
- ``roundtrip``: simulated events encoded and decoded with no model (the decoder's own loss),
  then with Gaussian noise of a given size added in feature space (how exact a model must be).
- ``rank``: the events projected on the top-r principal components of the training features
  (r = the model widths), with the rest dropped or replaced by Gaussian noise of the rest's
  variance: what a denoiser whose output varies only in an r-dimensional subspace can give.
- ``neu30``: NEU's final training (30 epochs), then generation at 50/200/1000 DDIM steps, eta
  0 and 1, and with the predicted x0 clipped to the data's range; the learned skip gate and
  how much of each generated event lies outside the output head's range.
- ``neu300``: the same model trained 10x longer (a diagnostic, not a recipe).
- ``energies``: the ceiling (simulated vs simulated) with training energies that cover the
  trigger sample's 2-15 MeV.
- ``variant_NAME`` (``VARIANTS``): NEU's final training with one change (what the network
  predicts, the schedule, the time encoding, the training energies, the charge scale, the
  epochs or the training set's size), sampled at 50 steps with x0 in the data's range
  (``Normaliser.bounds``, what ``diffusion.generate`` does), and with the old +/- 6 clip and
  per-feature ranges beside. Training goes through ``diffusion.trainer.Trainer``, so a v
  variant trains on the project's own v target.

The base setup's training energies are 15-80 MeV per ring (``--low-mev``), the presets' before
they began at 2 MeV, so the first calls' experiments rerun as they ran; ``--truth-seed`` draws
another held-out truth than the verification's (to choose a setting on events it never scores).
The device calls that ran it: results/quality-diagnosis-h200.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("KERAS_BACKEND", "jax")

from diffusion import quality  # noqa: E402
from diffusion.data import prepare  # noqa: E402
from diffusion.detector import Detector, EventConfig, Events  # noqa: E402
from diffusion.paths import NEU  # noqa: E402
from diffusion.presets import get_preset  # noqa: E402
from diffusion.rings import count_rings, success_rate  # noqa: E402
from diffusion.verify import VERIFY_SEED_OFFSET  # noqa: E402

# NEU's best trial at small, seed 0 (results/quality-small-h200.json).
NEU_PARAMS = {"learning_rate": 0.0011633911675930026, "hidden_dim": 768, "blocks": 4, "clip_norm": 0.5}


def score(truth: Events, simulated: Events, other: Events, raw_min: np.ndarray | None, detector: Detector) -> dict:
    """The verification's metrics (AUC aside) of ``other`` against ``simulated``."""
    bins = quality.energy_bins(truth.energy.sum(axis=1))
    obs_sim = quality.observables(simulated, detector)
    obs = quality.observables(other, detector)
    table = quality.separation_table(obs_sim, obs, bins)
    phys_sim = quality.physical(obs_sim, detector)
    phys = quality.physical(obs, detector, raw_min)
    rings = count_rings(other.charge, detector.positions, truth.vertex)
    return {
        "fidelity": quality.fidelity(table),
        "separation": {k: float(np.mean(v)) for k, v in table.items()},
        "physics_score": float(phys["all"].mean()) / max(float(phys_sim["all"].mean()), 1e-12),
        "physics": {k: float(v.mean()) for k, v in phys.items()},
        "multiplicity_success": success_rate(truth.multiplicity, rings),
        "energy_violation": quality.energy_violation(simulated, other, bins),
        "nhit_mean": float(other.hit.sum(axis=1).mean()),
        "charge_mean": float(np.where(other.hit, other.charge, 0).sum(axis=1).mean()),
    }


class Setup:
    """The preset's data, detector and the verification's held-out truth, simulated twice."""

    def __init__(self, preset_name: str, events: int, event_config: EventConfig, truth_seed: int = 0) -> None:
        self.preset = dataclasses.replace(get_preset(preset_name), events=event_config)
        self.data = prepare(self.preset)
        self.detector = Detector(self.preset.detector)
        self.truth_seed = truth_seed  # 0: the verification's own truth (diffusion.verify --seed 0)
        self.rng = np.random.default_rng([self.preset.seed, VERIFY_SEED_OFFSET, truth_seed])
        self.truth = self.detector.sample_truth(self.rng, events, self.preset.events)
        visible = self.data.normaliser.visible
        self.simulated = visible(self.detector.respond(self.rng, self.truth))
        self.independent = visible(self.detector.respond(self.rng, self.truth))

    def decoded(self, features: np.ndarray) -> tuple[Events, np.ndarray]:
        norm = self.data.normaliser
        charge, hit_time = norm.decode(features)
        raw_min = norm.raw_charge(features).min(axis=1)
        events = dataclasses.replace(self.truth, charge=charge.astype(np.float32), time=hit_time.astype(np.float32))
        return events, raw_min

    def score(self, features: np.ndarray) -> dict:
        events, raw_min = self.decoded(features)
        return score(self.truth, self.simulated, events, raw_min, self.detector)

    def ceiling(self) -> dict:
        return score(self.truth, self.simulated, self.independent, None, self.detector)


def exp_data(setup: Setup) -> dict:
    norm = setup.data.normaliser
    x = setup.data.train.x
    n_pmt = setup.preset.detector.n_pmt
    q = x[:, :n_pmt]
    floor = (0.0 - norm.charge_mean) / norm.charge_std
    cut = (np.log1p(norm.hit_threshold) - norm.charge_mean) / norm.charge_std
    negative = (np.log1p(quality.NEGATIVE_CHARGE_PE) - norm.charge_mean) / norm.charge_std
    return {
        "normaliser": dataclasses.asdict(norm),
        "features": int(x.shape[1]),
        "unlit_share": float(np.mean(np.isclose(q, floor))),
        "hits_per_event": float(np.mean(np.sum(~np.isclose(q, floor), axis=1))),
        "charge_feature_floor": float(floor),
        "hit_cut_feature": float(cut),
        "negative_check_feature": float(negative),
        "gap_floor_to_cut": float(cut - floor),
        "gap_floor_to_negative_check": float(floor - negative),
        "feature_std": float(x.std()),
    }


def exp_roundtrip(setup: Setup) -> dict:
    x = setup.data.normaliser.encode(setup.simulated)
    out: dict[str, Any] = {"ceiling": setup.ceiling(), "roundtrip": setup.score(x)}
    rng = np.random.default_rng(5)
    for sigma in (0.02, 0.05, 0.1, 0.2):
        out[f"noise_{sigma}"] = setup.score(x + sigma * rng.standard_normal(x.shape).astype(np.float32))
    return out


def exp_rank(setup: Setup) -> dict:
    train = setup.data.train.x.astype(np.float64)
    mean = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    variance = s**2 / len(train)
    x = setup.data.normaliser.encode(setup.simulated).astype(np.float64)
    rng = np.random.default_rng(6)
    out: dict[str, Any] = {"explained": {}}
    for r in (64, 256, 768):
        basis = vt[:r]
        projected = mean + (x - mean) @ basis.T @ basis
        rest = variance[r:].sum() / (len(mean) - r)  # per complement direction
        z = rng.standard_normal(x.shape)
        z -= z @ basis.T @ basis
        out["explained"][r] = float(variance[:r].sum() / variance.sum())
        out[f"rank_{r}_rest_dropped"] = setup.score(projected.astype(np.float32))
        out[f"rank_{r}_rest_gaussian"] = setup.score((projected + np.sqrt(rest) * z).astype(np.float32))
        out[f"rank_{r}_rest_std"] = float(np.sqrt(rest))
    return out


def ddim(
    eps_fn: Any,
    cond: np.ndarray,
    schedule: Any,
    n_features: int,
    *,
    steps: int,
    eta: float,
    rng: np.random.Generator,
    low: np.ndarray | float,
    high: np.ndarray | float,
) -> np.ndarray:
    """``diffusion.schedule.ddim_sample`` with per-feature clip bounds for the predicted x0."""
    alpha_bar = schedule.alpha_bar
    times = np.linspace(schedule.timesteps - 1, 0, steps).round().astype(int)
    x = rng.standard_normal((len(cond), n_features)).astype(np.float32)
    for i, t in enumerate(times):
        ab = alpha_bar[t]
        ab_prev = alpha_bar[times[i + 1]] if i + 1 < len(times) else 1.0
        eps = np.asarray(eps_fn(x, np.full((len(cond), 1), t, np.float32), cond), dtype=np.float64)
        x0 = np.clip((x - np.sqrt(1 - ab) * eps) / np.sqrt(ab), low, high)
        eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        direction = np.sqrt(np.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
        x = (np.sqrt(ab_prev) * x0 + direction + sigma * rng.standard_normal(x.shape)).astype(np.float32)
    return x


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training and sampling setup of an experiment (``base``: NEU's recipe as it is)."""

    prediction: str = "eps"  # eps: the network predicts the noise; v: Salimans & Ho 2022
    schedule: str = "linear"
    time_encoding: str = "absolute"  # residual: hit time minus the vertex-to-PMT time of flight
    epochs: int = 30
    n_train: int | None = None  # None: the preset's
    low_mev: float | None = None  # None: the preset's training energies
    params: tuple[tuple[str, Any], ...] = tuple(NEU_PARAMS.items())
    clip: str = "bounds"
    steps: int = 50
    charge_scale_pe: float = 1.0  # charge features log1p(q / this)
    other_clips: bool = True  # also sample with the old +/- 6 clip and per-feature ranges


class ResidualTimes:
    """The normaliser with hit times encoded as residuals from the straight time of flight."""

    def __init__(self, base: Any, detector: Detector, events: Events) -> None:
        self.base, self.detector = base, detector
        residual = (events.time - self.tof(events.vertex))[events.hit]
        self.mean, self.std = float(residual.mean()), float(residual.std() + 1e-6)
        self.hit_threshold = base.hit_threshold

    def tof(self, vertex: np.ndarray) -> np.ndarray:
        from diffusion.detector import SPEED_OF_LIGHT_M_PER_NS

        distance = np.linalg.norm(self.detector.positions[None] - vertex[:, None].astype(np.float64), axis=2)
        return distance * self.detector.config.refractive_index / SPEED_OF_LIGHT_M_PER_NS

    def encode(self, events: Events) -> np.ndarray:
        x = self.base.encode(events)
        n = events.charge.shape[1]
        x[:, n:] = np.where(events.hit, (events.time - self.tof(events.vertex) - self.mean) / self.std, 0.0)
        return x

    def decode_with(self, features: np.ndarray, vertex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        charge, _ = self.base.decode(features)
        n = charge.shape[1]
        t = features[:, n:] * self.std + self.mean + self.tof(vertex)
        return charge, np.where(charge > 0, t, 0.0)

    def visible(self, events: Events) -> Events:
        return self.base.visible(events)


def variant_setup(setup: Setup, variant: Variant) -> Setup:
    """The setup with the variant's data: schedule, time encoding, training set size, energies."""
    from diffusion.data import PreparedData, TrainingData, ValidationSet
    from diffusion.dataset import Normaliser, load_events
    from diffusion.presets import DiffusionConfig
    from diffusion.schedule import NoiseSchedule

    diffusion = DiffusionConfig(schedule=variant.schedule, prediction=variant.prediction)
    preset = dataclasses.replace(setup.preset, diffusion=diffusion)
    if variant.n_train is not None:
        preset = dataclasses.replace(preset, n_train=variant.n_train)
    if variant.low_mev is not None:
        preset = dataclasses.replace(preset, events=EventConfig(energy_range_mev=(variant.low_mev, 80.0)))
    same_encoding = variant.time_encoding == "absolute" and variant.charge_scale_pe == 1.0
    if preset == setup.preset and same_encoding:
        return setup
    new = Setup.__new__(Setup)
    new.__dict__.update(setup.__dict__)
    new.preset = preset
    if preset.events != setup.preset.events:  # the held-out truth follows the training energies
        new.rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, setup.truth_seed])
        new.truth = setup.detector.sample_truth(new.rng, len(setup.truth), preset.events)
        new.simulated = setup.data.normaliser.visible(setup.detector.respond(new.rng, new.truth))
        new.independent = setup.data.normaliser.visible(setup.detector.respond(new.rng, new.truth))
    schedule = NoiseSchedule.from_config(preset.diffusion)
    radius = preset.detector.radius_m
    train_events = load_events(preset.detector, preset.events, preset.n_train, preset.seed)
    val_events = load_events(preset.detector, preset.events, preset.n_val, preset.seed + 1_000_003)
    norm: Any = Normaliser.fit(train_events, charge_scale_pe=variant.charge_scale_pe)
    if variant.time_encoding == "residual":
        norm = ResidualTimes(norm, setup.detector, train_events)
    rng = np.random.default_rng([preset.seed, 1_000_003])
    x0 = norm.encode(val_events)
    t = rng.integers(0, schedule.timesteps, len(x0))
    noise = rng.standard_normal(x0.shape, dtype=np.float32)
    validation = ValidationSet(
        schedule.q_sample(x0, t, noise).astype(np.float32),
        t[:, None].astype(np.float32),
        val_events.condition(radius),
        noise,
    )
    train = TrainingData(norm.encode(train_events), train_events.condition(radius))
    new.data = PreparedData(train, validation, norm, schedule)
    new.norm = norm
    return new


def decoded_variant(setup: Setup, features: np.ndarray) -> tuple[Events, np.ndarray]:
    norm = setup.data.normaliser
    if not isinstance(norm, ResidualTimes):
        return setup.decoded(features)
    charge, hit_time = norm.decode_with(features, setup.truth.vertex)
    raw_min = norm.base.raw_charge(features).min(axis=1)
    events = dataclasses.replace(setup.truth, charge=charge.astype(np.float32), time=hit_time.astype(np.float32))
    return events, raw_min


def eps_of(trainer: Any, setup: Setup, prediction: str) -> Any:
    """The predicted noise of a trained model, whatever it predicts (``NoiseSchedule.eps_from``)."""

    def eps_fn(x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.asarray(trainer.model.predict_on_batch([x, t, c]), dtype=np.float64)
        return setup.data.schedule.eps_from(prediction, out, x, t)

    return eps_fn


def train_variant(setup: Setup, variant: Variant, seed: int = 0) -> tuple[Any, dict]:
    from diffusion.hpo.space import apply_params
    from diffusion.trainer import Trainer

    preset, path = apply_params(setup.preset, NEU, dict(variant.params))
    trainer = Trainer(preset, path, seed=seed, data=setup.data)  # its step regresses on the preset's target
    start = time.perf_counter()
    losses = [float(np.mean(trainer.train_epoch().losses)) for _ in range(variant.epochs)]
    train_s = time.perf_counter() - start
    trainer.stepper.sync_to_model()
    return trainer, {"train_s": train_s, "train_loss_last": losses[-1], "train_loss_first": losses[0]}


def loss_by_t(eps_fn: Any, setup: Setup) -> dict:
    """Validation noise-prediction MSE, overall and in bins of t: where the model's error sits."""
    v = setup.data.validation
    eps = np.concatenate([eps_fn(v.x_t[s], v.t[s], v.cond[s]) for s in _slices(len(v), 512)])
    err = np.mean((eps - v.noise) ** 2, axis=1)
    edges = [0, 10, 50, 100, 250, 500, 750, 1000]
    bins = {
        f"{lo}-{hi}": float(err[(v.t[:, 0] >= lo) & (v.t[:, 0] < hi)].mean()) for lo, hi in itertools.pairwise(edges)
    }
    return {"all": float(err.mean()), **bins}


def _slices(n: int, size: int) -> list[slice]:
    return [slice(lo, lo + size) for lo in range(0, n, size)]


def sample(eps_fn: Any, setup: Setup, *, steps: int, clip: str, eta: float = 0.0, seed: int = 11) -> np.ndarray:
    n_features = setup.data.train.x.shape[1]
    if clip == "range":  # the training features' own range, per feature
        low, high = setup.data.train.x.min(axis=0), setup.data.train.x.max(axis=0)
    elif clip == "bounds":  # what diffusion.generate clips to: Normaliser.bounds
        norm = setup.data.normaliser
        low, high = getattr(norm, "base", norm).bounds(setup.preset.detector.n_pmt)
        if isinstance(norm, ResidualTimes):  # residual times: the training residuals' range
            n = setup.preset.detector.n_pmt
            low[n:], high[n:] = setup.data.train.x[:, n:].min(), setup.data.train.x[:, n:].max()
    else:
        low, high = -float(clip), float(clip)
    cond = setup.truth.condition(setup.preset.detector.radius_m)
    rng = np.random.default_rng(seed)
    parts = [
        ddim(eps_fn, cond[s], setup.data.schedule, n_features, steps=steps, eta=eta, rng=rng, low=low, high=high)
        for s in _slices(len(cond), 512)
    ]
    return np.concatenate(parts)


def exp_variant(base: Setup, variant: Variant) -> dict:
    t0 = time.perf_counter()
    setup = variant_setup(base, variant)
    out: dict[str, Any] = {"variant": dataclasses.asdict(variant), "setup_s": time.perf_counter() - t0}
    trainer, out["training"] = train_variant(setup, variant)
    eps_fn = eps_of(trainer, setup, variant.prediction)
    out["val_loss_by_t"] = loss_by_t(eps_fn, setup)
    t0 = time.perf_counter()
    x = sample(eps_fn, setup, steps=variant.steps, clip=variant.clip)
    events, raw_min = decoded_variant(setup, x)
    out["generated"] = score(setup.truth, setup.simulated, events, raw_min, setup.detector)
    out["generated"]["generation_s"] = time.perf_counter() - t0
    for clip in (
        ("6", "range") if variant.other_clips else ()
    ):  # the same model with the old clip, and with per-feature ranges
        x = sample(eps_fn, setup, steps=variant.steps, clip=clip)
        events, raw_min = decoded_variant(setup, x)
        out[f"generated_clip{clip}"] = score(setup.truth, setup.simulated, events, raw_min, setup.detector)
    if variant.low_mev is not None:
        out["ceiling"] = score(setup.truth, setup.simulated, setup.independent, None, setup.detector)
    return out


def head_complement(trainer: Any, features: np.ndarray) -> float:
    """Share of the features' variance (about their mean) outside the output head's range."""
    import keras

    kernel = np.asarray(keras.ops.convert_to_numpy(trainer.model.get_layer("eps_head").kernel), dtype=np.float64)
    q, _ = np.linalg.qr(kernel.T)  # (F, width): an orthonormal basis of the range
    centred = features - features.mean(axis=0)
    return float(1.0 - np.sum((centred @ q) ** 2) / np.sum(centred**2))


def gate_values(trainer: Any, setup: Setup) -> dict:
    """The learned skip gate g(t, cond) beside 1 / sqrt(1 - alpha_bar), its value for a feature
    that the model knows exactly (a PMT at the no-light point)."""
    import keras

    model = trainer.model
    gate = keras.Model(model.inputs, model.get_layer("skip_gate").output)
    cond = setup.truth.condition(setup.preset.detector.radius_m)[:256]
    zeros = np.zeros((256, setup.data.train.x.shape[1]), np.float32)
    ab = setup.data.schedule.alpha_bar
    out = {}
    for t in (0, 10, 100, 500, 999):
        g = np.asarray(gate.predict_on_batch([zeros, np.full((256, 1), t, np.float32), cond]))
        out[str(t)] = {"gate": float(g.mean()), "one_over_sigma": float(1 / np.sqrt(1 - ab[t]))}
    return out


def exp_model(setup: Setup, epochs: int, samplers: list[tuple[int, float, str]]) -> dict:
    """NEU's model as it was (eps prediction), at several samplers: steps, eta, x0 clip."""
    variant = Variant(epochs=epochs)
    setup = variant_setup(setup, variant)
    trainer, out = train_variant(setup, variant)
    eps_fn = eps_of(trainer, setup, "eps")
    out["val_loss_by_t"] = loss_by_t(eps_fn, setup)
    out["gate"] = gate_values(trainer, setup)
    encode = setup.data.normaliser.encode
    out["head_complement_share"] = {"simulated": head_complement(trainer, encode(setup.simulated).astype(np.float64))}
    for steps, eta, clip in samplers:
        t0 = time.perf_counter()
        x = sample(eps_fn, setup, steps=steps, eta=eta, clip=clip)
        key = f"steps{steps}_eta{eta}_clip{clip}"
        out[key] = setup.score(x)
        out[key]["generation_s"] = time.perf_counter() - t0
        out["head_complement_share"][key] = head_complement(trainer, x.astype(np.float64))
    return out


ALT_PARAMS = (("learning_rate", 3e-4), ("hidden_dim", 256), ("blocks", 4), ("clip_norm", 0.0))
VARIANTS: dict[str, Variant] = {
    "eps": Variant(),
    "v": Variant(prediction="v"),
    "v_residual": Variant(prediction="v", time_encoding="residual"),
    "eps_residual": Variant(time_encoding="residual"),
    "eps_cosine": Variant(schedule="cosine"),
    "v_cosine": Variant(prediction="v", schedule="cosine"),
    "v_2mev": Variant(prediction="v", low_mev=2.0),
    "v_alt5": Variant(prediction="v", epochs=5, params=ALT_PARAMS),
    "eps_alt5": Variant(epochs=5, params=ALT_PARAMS),
    "v_data8x": Variant(prediction="v", n_train=32768),
    "v_2mev_residual": Variant(prediction="v", low_mev=2.0, time_encoding="residual"),
    # The charge encoding's scale, trained on 2-80 MeV; chosen on another truth (--truth-seed 1).
    "v_2mev_scale1": Variant(prediction="v", low_mev=2.0, other_clips=False),
    "v_2mev_scale0.25": Variant(prediction="v", low_mev=2.0, charge_scale_pe=0.25, other_clips=False),
    "v_2mev_scale0.1": Variant(prediction="v", low_mev=2.0, charge_scale_pe=0.1, other_clips=False),
    "v_300": Variant(prediction="v", epochs=300),
}


def exp_energies(events: int) -> dict:
    out = {}
    for low in (2.0, 15.0):
        config = EventConfig(energy_range_mev=(low, 80.0))
        preset = dataclasses.replace(get_preset("small"), events=config)
        detector = Detector(preset.detector)
        rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, 0])
        truth = detector.sample_truth(rng, events, config)
        from diffusion.dataset import Normaliser

        norm = Normaliser(0.0, 1.0, 0.0, 1.0)
        a = norm.visible(detector.respond(rng, truth))
        b = norm.visible(detector.respond(rng, truth))
        out[f"{low:g}-80"] = score(truth, a, b, None, detector)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="data,roundtrip,rank,neu30,energies,neu300")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--low-mev", type=float, default=15.0, help="the base setup's lowest ring energy")
    parser.add_argument("--truth-seed", type=int, default=0, help="0: the verification's truth")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    setup = Setup(args.preset, args.events, EventConfig(energy_range_mev=(args.low_mev, 80.0)), args.truth_seed)
    print(f"setup: {time.perf_counter() - t0:.1f} s", flush=True)
    samplers30 = [(50, 0.0, "6"), (200, 0.0, "6"), (1000, 0.0, "6"), (200, 1.0, "6"), (50, 0.0, "range")]
    samplers30.append((200, 0.0, "range"))
    experiments = {
        "data": lambda: exp_data(setup),
        "roundtrip": lambda: exp_roundtrip(setup),
        "rank": lambda: exp_rank(setup),
        "neu30": lambda: exp_model(setup, 30, samplers30),
        "energies": lambda: exp_energies(args.events),
        "neu300": lambda: exp_model(setup, 300, [(50, 0.0, "6"), (200, 0.0, "range")]),
    }
    experiments |= {f"variant_{name}": (lambda v=v: exp_variant(setup, v)) for name, v in VARIANTS.items()}
    for name in args.only.split(","):
        t0 = time.perf_counter()
        result = experiments[name]()
        result["wall_s"] = time.perf_counter() - t0
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=float))
        print(f"{name}: {result['wall_s']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
