import time, numpy as np
from diffusion.paths import parse_path
from diffusion.presets import get_preset
from diffusion.trainer import Trainer
preset = get_preset("seed")
for spec in ("alt:train_compile=graph", "neu"):
    tr = Trainer(preset, parse_path(spec), seed=0)
    tr.train_steps(3)  # trace
    res = tr.train_steps(40)
    rate = 32 / (res.wait_s + res.step_s)
    print(spec, "per-step samples/s: min %.0f median %.0f max %.0f" % (rate.min(), np.median(rate), rate.max()),
          "wait share %.2f" % res.input_wait_share(0), [int(x) for x in rate[:20]], flush=True)
    tr.close()
