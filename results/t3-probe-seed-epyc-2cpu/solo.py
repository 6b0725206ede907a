import numpy as np

from diffusion.paths import parse_path
from diffusion.presets import get_preset
from diffusion.trainer import Trainer

preset = get_preset("seed")
for spec in ("alt:train_compile=graph", "neu"):
    tr = Trainer(preset, parse_path(spec), seed=0)
    tr.train_steps(3)  # trace
    res = tr.train_steps(40)
    rate = 32 / (res.wait_s + res.step_s)
    print(
        spec,
        f"per-step samples/s: min {rate.min():.0f} median {np.median(rate):.0f} max {rate.max():.0f}",
        f"wait share {res.input_wait_share(0):.2f}",
        [int(x) for x in rate[:20]],
        flush=True,
    )
    tr.close()
