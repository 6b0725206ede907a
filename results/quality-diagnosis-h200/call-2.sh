# The second device call (one H200): NEU's final training and verification through the CLIs with v and
# x0 in the data's range (training energies still 15-80 MeV), then the variants; the last two were cut.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $HOME/site .whl/*.whl && export PYTHONPATH=$HOME/site:$PWD KERAS_BACKEND=jax
echo '{"params": {"learning_rate": 0.0011633911675930026, "hidden_dim": 768, "blocks": 4, "batch_size": 32, "clip_norm": 0.5}}' > /tmp/best.json
mkdir -p $OUT/pipe $OUT/diag
( time timeout 150 python3 -m diffusion.train --path neu --preset small --epochs 30 --seed 0 --config /tmp/best.json --out /tmp/run --json $OUT/pipe/train.json --no-progress ) 2>&1 | grep -v Warning | tail -5
( time timeout 100 python3 -m diffusion.verify --checkpoint /tmp/run --events 1000 --steps 50 --seed 0 --json $OUT/pipe/verify.json --no-progress ) 2>&1 | grep -v Warning | tail -22
timeout 330 python3 results/quality-diagnosis-h200.py --out $OUT/diag --only variant_v,variant_eps,variant_v_residual,variant_v_2mev,variant_v_alt5,variant_eps_alt5,variant_v_cosine,variant_v_300,variant_v_data8x 2>&1 | grep -v Warning | tail -20
