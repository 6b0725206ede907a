# One device call of the GPU quality records (issue 23): the quality suite at one preset, its
# pipelines several at once, resumed from the finished jobs of an earlier call.
#   bash results/quality-h200-call.sh PRESET SECONDS [CONCURRENT [ROLES]]   (ROLES: both, base, candidate)
# Finished jobs live in .bench-work/ (git-ignored: a warm machine keeps it between calls) and
# go back in $OUT/work-PRESET.tgz: every job record, and the checkpoint of a training whose
# verification has not finished (a later call verifies it). Put a pack from an earlier call
# at .quality-carry/work-PRESET.tgz (carried) to resume on a fresh machine.
set -uo pipefail
preset=$1 seconds=$2 concurrent=${3:-6} roles=${4:-both}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# JAX takes 75% of the GPU's memory per process by default: with jobs at once, each takes what it uses.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
pack=.quality-carry/work-$preset.tgz
[ -f "$pack" ] && [ ! -d .bench-work ] && mkdir -p .bench-work && tar xzf "$pack" -C .bench-work && echo "restored $pack"
timeout "$seconds" python3 -m bench.compare alt neu --suite quality --preset "$preset" --quality-seeds 3 \
  --quality-concurrent "$concurrent" --quality-roles "$roles" --work-dir .bench-work \
  --json "$OUT/quality-$preset-h200.json" --markdown "$OUT/quality-$preset-h200.md" 2>&1 \
  | grep -v -i warning | tee "$OUT/log-$preset.txt"
echo "compare exited ${PIPESTATUS[0]}"
python3 - "$preset" "$OUT/work-$preset.tgz" <<'EOF'
import sys, tarfile
from pathlib import Path
preset, dest = sys.argv[1], sys.argv[2]
with tarfile.open(dest, "w:gz") as tar:
    for work in Path(".bench-work").glob(f"quality-{preset}-*"):
        for done in work.glob("*.json"):
            tar.add(done, done.relative_to(".bench-work"))
            job = done.stem
            if job.endswith("-train") and not (work / f"{job[:-6]}-verify.json").exists():
                tar.add(work / job / "run", (work / job / "run").relative_to(".bench-work"))
print("packed", dest, Path(dest).stat().st_size, "bytes")
EOF
