from bench.roles import Role
from bench.turns import run_turns
from diffusion.paths import parse_path
from diffusion.presets import get_preset

preset = get_preset("seed")
roles = [
    Role("base", parse_path("alt"), ("train",)),
    Role("graph", parse_path("alt:train_compile=graph"), ("train",), reference="base", knobs=("train_compile",)),
]
out = {}
for freeze in (True, False):
    recs = run_turns(
        roles,
        preset,
        2,
        0.25,
        job_options={"train_seconds": 2.5, "val_passes": 2, "min_steps": 4},
        freeze=freeze,
        seed=1,
    )
    for r in recs:
        tr = r["phases"]["train"]
        print(
            "freeze" if freeze else "live",
            r["round"],
            r["role"],
            "rate {:.0f}".format(tr["train_samples_per_s"]),
            [round(x) for x in tr["turn_samples_per_s"]],
            flush=True,
        )
