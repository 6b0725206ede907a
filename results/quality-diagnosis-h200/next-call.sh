# Not run: the session's device time was spent (results/quality-diagnosis-h200.md, "Left out").
# Prepared as the next call: it chooses the charge scale on another truth, then trains and verifies.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $HOME/site .whl/*.whl && export PYTHONPATH=$HOME/site:$PWD KERAS_BACKEND=jax
timeout 150 python3 results/quality-diagnosis-h200.py --out $OUT --low-mev 2 --truth-seed 1 --only variant_v_2mev_scale1,variant_v_2mev_scale0.25,variant_v_2mev_scale0.1 2>&1 | grep -v Warning | tail -5
python3 - <<'P'
import json, os, re
out, scores = os.environ["OUT"], {}
for scale in ("1", "0.25", "0.1"):
    try:
        d = json.load(open(f"{out}/variant_v_2mev_scale{scale}.json"))
    except FileNotFoundError:
        continue
    g, c = d["generated"], d["ceiling"]
    scores[scale] = g["physics_score"] / c["physics_score"] + g["multiplicity_success"] / c["multiplicity_success"]
best = max(scores, key=scores.get) if scores else "1"
src = open("diffusion/dataset.py").read()
open("diffusion/dataset.py", "w").write(re.sub(r"^CHARGE_SCALE_PE = .*$", f"CHARGE_SCALE_PE = {float(best)}", src, flags=re.M))
json.dump({"scores": scores, "chosen": best}, open(f"{out}/chosen.json", "w"))
print("chosen", best, scores)
P
echo '{"params": {"learning_rate": 0.0011633911675930026, "hidden_dim": 768, "blocks": 4, "batch_size": 32, "clip_norm": 0.5}}' > /tmp/best.json
timeout 90 python3 -m diffusion.train --path neu --preset small --epochs 30 --seed 0 --config /tmp/best.json --out /tmp/run --json $OUT/train.json --no-progress 2>&1 | grep -v Warning | tail -3
timeout 70 python3 -m diffusion.verify --checkpoint /tmp/run --events 1000 --steps 50 --seed 0 --json $OUT/verify.json --no-progress 2>&1 | grep -v Warning | tail -16
python3 -c "from bench.quality import code_digest; print(code_digest())" > $OUT/digest.txt 2>/dev/null; git rev-parse HEAD >> $OUT/digest.txt 2>/dev/null; cat $OUT/digest.txt
