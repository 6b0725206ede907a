# Issue 23, seed diagnosis (results/quality-seed-diagnosis.md). Run from the repository root after
#   python -m diffusion.train --path neu --preset seed --epochs 30 --seed 0 --config results/quality-seed-diagnosis/best-256x3.json --out /tmp/seeddiag/run
# (its checkpoint is what these read); printed output: outputs.txt.
import time
from pathlib import Path

import numpy as np

from diffusion.data import prepare
from diffusion.detector import Detector
from diffusion.generate import Generator, read_checkpoint
from diffusion.schedule import ddim_sample
from diffusion.verify import VERIFY_SEED_OFFSET

ckpt, preset = read_checkpoint(Path("/tmp/seeddiag/run"))
data = prepare(preset)
gen = Generator(ckpt, preset, data.normaliser, data.schedule, steps=50)
det = Detector(preset.detector)
rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, 0])
truth = det.sample_truth(rng, 500, preset.events)
sim = data.normaliser.visible(det.respond(rng, truth))
cond = truth.condition(preset.detector.radius_m)
bounds = data.normaliser.bounds(preset.detector.n_pmt)
ts = np.where(sim.hit, sim.charge, 0).sum(axis=1)


# the training data's own features, decoded: what the normaliser round trip gives
def report(name, feats):
    charge, _ = data.normaliser.decode(feats)
    hit = charge >= 0.5
    tg = np.where(hit, charge, 0).sum(axis=1)
    ng = hit.sum(axis=1)
    r = tg / np.maximum(ts, 1e-9)
    print(
        f"{name}: empty {float((ng < 5).mean()):.3f}, charge gen/sim median {np.median(r):.3f}, hits/event {np.median(ng):.0f} (sim {np.median(sim.hit.sum(axis=1)):.0f}), charge/hit {np.median(tg / np.maximum(ng, 1)):.2f} (sim {np.median(ts / np.maximum(sim.hit.sum(axis=1), 1)):.2f})",
        flush=True,
    )


for name, kw in [
    ("50 steps eta 0 clip", dict(steps=50)),
    ("200 steps", dict(steps=200)),
    ("50 steps eta 1", dict(steps=50, eta=1.0)),
    ("50 steps no clip", dict(steps=50, clip_x0=None)),
]:
    t0 = time.perf_counter()
    args = dict(steps=50, rng=np.random.default_rng(1), clip_x0=bounds)
    args.update(kw)
    feats = ddim_sample(gen.eps, cond, data.schedule, gen.n_features, **args)
    report(name + f" ({time.perf_counter() - t0:.0f} s)", feats)
# x0 predicted at a small t from the simulated event itself (how well the model denoises a nearly clean event)
x0 = data.normaliser.encode(sim) if hasattr(data.normaliser, "encode") else None
print("encode available:", x0 is not None)
