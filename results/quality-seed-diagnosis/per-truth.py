# Issue 23, seed diagnosis (results/quality-seed-diagnosis.md). Run from the repository root after
#   python -m diffusion.train --path neu --preset seed --epochs 30 --seed 0 --config results/quality-seed-diagnosis/best-256x3.json --out /tmp/seeddiag/run
# (its checkpoint is what these read); printed output: outputs.txt.
from pathlib import Path

import numpy as np

from diffusion.data import prepare
from diffusion.detector import Detector
from diffusion.generate import Generator, read_checkpoint
from diffusion.verify import VERIFY_SEED_OFFSET

ckpt, preset = read_checkpoint(Path("/tmp/seeddiag/run"))
data = prepare(preset)
gen = Generator(ckpt, preset, data.normaliser, data.schedule, steps=50)
det = Detector(preset.detector)
rng = np.random.default_rng([preset.seed, VERIFY_SEED_OFFSET, 0])
truth = det.sample_truth(rng, 1000, preset.events)
vis = data.normaliser.visible
sim = vis(det.respond(rng, truth))
_ = vis(det.respond(rng, truth))
g = gen.generate(truth, steps=50, rng=rng).events
E = truth.energy.sum(axis=1)


def tot(ev):
    return np.where(ev.hit, ev.charge, 0).sum(axis=1)


def nh(ev):
    return ev.hit.sum(axis=1)


ts, tg = tot(sim), tot(g)
ns, ng = nh(sim), nh(g)
print("PMTs", preset.detector.n_pmt, "rings per event", truth.energy.shape)
print("empty generated (<5 hits):", float((ng < 5).mean()), " simulated:", float((ns < 5).mean()))
nonempty = ng >= 5
r = tg[nonempty] / ts[nonempty]
print(
    "charge gen/sim per event (non-empty): median {:.3f}, q10 {:.3f}, q90 {:.3f}".format(
        *tuple(np.quantile(r, [0.5, 0.1, 0.9]))
    )
)
rn = ng[nonempty] / np.maximum(ns[nonempty], 1)
print(
    "hits gen/sim per event (non-empty): median {:.3f}, q10 {:.3f}, q90 {:.3f}".format(
        *tuple(np.quantile(rn, [0.5, 0.1, 0.9]))
    )
)
# charge per hit
cps = ts / np.maximum(ns, 1)
cpg = tg / np.maximum(ng, 1)
print(f"charge per hit: sim median {np.median(cps):.2f}, gen median {np.median(cpg[nonempty]):.2f} (non-empty)")
# empties vs energy
for lo, hi in [(0, 10), (10, 30), (30, 60), (60, 1000)]:
    m = (E >= lo) & (E < hi)
    if m.sum():
        print(
            f"E {lo}-{hi} MeV: n={m.sum()}, empty gen {float((ng[m] < 5).mean()):.3f}, median charge gen/sim {np.median(tg[m] / np.maximum(ts[m], 1e-9)):.3f}"
        )
# spurious faint hits: hits in generated where sim has none (not paired PMT-wise strictly, but count low-charge hits)
faint_g = (g.hit & (g.charge < 1.5)).sum(axis=1)
faint_s = (sim.hit & (sim.charge < 1.5)).sum(axis=1)
print("hits under 1.5 pe per event: sim median", np.median(faint_s), "gen median", np.median(faint_g))
nr = (truth.energy > 0).sum(axis=1)
for k in sorted(set(nr.tolist())):
    m = nr == k
    print(f"{k} rings: n={m.sum()}, empty gen {float((ng[m] < 5).mean()):.3f}")
