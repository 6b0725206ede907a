# Issue 23, seed diagnosis (results/quality-seed-diagnosis.md). Run from the repository root after
#   python -m diffusion.train --path neu --preset seed --epochs 30 --seed 0 --config results/quality-seed-diagnosis/best-256x3.json --out /tmp/seeddiag/run
# (its checkpoint is what these read); printed output: outputs.txt.
from pathlib import Path

import numpy as np

from diffusion.data import prepare
from diffusion.detector import Detector
from diffusion.generate import read_checkpoint
from diffusion.verify import VERIFY_SEED_OFFSET

ckpt, preset = read_checkpoint(Path("/tmp/seeddiag/run"))
data = prepare(preset)
det = Detector(preset.detector)
rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, 0])
truth = det.sample_truth(rng, 500, preset.events)
sim = data.normaliser.visible(det.respond(rng, truth))
print(
    "verify sim: charge/hit",
    np.median(np.where(sim.hit, sim.charge, 0).sum(1) / np.maximum(sim.hit.sum(1), 1)),
    "hits",
    np.median(sim.hit.sum(1)),
)
enc = data.normaliser.encode(sim)
c, _ = data.normaliser.decode(enc)
h = c >= 0.5
print("round trip: charge/hit", np.median(np.where(h, c, 0).sum(1) / np.maximum(h.sum(1), 1)))
x = data.train.x[:500]
c2, _ = data.normaliser.decode(x)
h2 = c2 >= 0.5
print(
    "training features decoded: charge/hit",
    np.median(np.where(h2, c2, 0).sum(1) / np.maximum(h2.sum(1), 1)),
    "hits",
    np.median(h2.sum(1)),
)
print("normaliser", {k: v for k, v in vars(data.normaliser).items() if not hasattr(v, "shape") or v.size < 5})
