"""The shapes of the records that ``--from`` and ``--baseline`` read, one per record kind.

Each names the fields its renderer and checks read, with their types; fields nobody reads are
left free (records of older schemas carry fields that are gone). A figure beside a verdict
must be finite: JSON lets NaN through, and a NaN estimate rendered as ``nanx`` next to
``holds`` would be a verdict on nothing. See ``diffusion.shapes`` for the notation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import VERDICT_LABELS, Verdict, verdict_word
from diffusion.files import read_json_record
from diffusion.shapes import NUMBER, ListOf, MapOf, Maybe, OneOf, Record, Shape, Test, check

VERDICTS = tuple(v.value for v in Verdict)
VERDICT = Test(
    lambda v: isinstance(v, str) and verdict_word(v) in VERDICTS,
    "a verdict ("
    + ", ".join(VERDICTS)
    + ", optionally labelled "
    + " or ".join(f"'({x})'" for x in VERDICT_LABELS)
    + ")",
)
INTERVAL = Record({"estimate": NUMBER, "low": NUMBER, "high": NUMBER})
PAIR = ListOf(NUMBER, length=2)
CLAIM = Record(
    {
        "id": str,
        "family": str,
        "text": str,
        "claimed": NUMBER,
        "base_value": Maybe(NUMBER),
        "candidate_value": Maybe(NUMBER),
        "measured": Maybe(INTERVAL),
        "verdict": VERDICT,
        "rounds": Maybe(int),
    },
    {
        "kind": str,
        "claimed_here": NUMBER,
        "claimed_alt": Maybe(str),
        "claimed_neu": Maybe(str),
        "source": Maybe(str),
        "tolerance": NUMBER,
        "band": Maybe(PAIR),
        "unit": Maybe(str),
        "ci": Maybe(PAIR),
        "reason": Maybe(str),
        "beside": Maybe(
            Record({"metric": str, "base_value": Maybe(NUMBER), "candidate_value": Maybe(NUMBER)}, {"unit": Maybe(str)})
        ),
        # Since sequential runs and simultaneous verdicts (bench.analysis); older records lack them.
        "confidence": NUMBER,
        "n": Maybe(int),
        "stop": Maybe(str),
        "simultaneous": Record(
            {"verdict": Maybe(VERDICT), "family": int}, {"ci": Maybe(PAIR), "confidence": Maybe(NUMBER)}
        ),
    },
)
ABLATION = Record(
    {
        "role": str,
        "phase": str,
        "reference_value": Maybe(NUMBER),
        "value": Maybe(NUMBER),
        "ratio": Maybe(INTERVAL),
    },
    {
        "unit": Maybe(str),
        "first_call_s": Maybe(NUMBER),
        "val_loss_stderr": Maybe(NUMBER),
        "input_wait_share": Maybe(NUMBER),
        "note": Maybe(str),
    },
)
PATH = Record({"spec": str, "knobs": dict})
# What bench.report_tables.environment_rows reads (every renderer's environment table); the rest is free.
ENVIRONMENT = Record({}, {"versions": dict, "env": dict, "threads": dict, "gpus": Maybe(ListOf(str))})
SCALING_ROW = Record(
    {
        "path": str,
        "cores": int,
        "train_samples_per_s": Maybe(NUMBER),
        "train_samples_per_s_speedup": Maybe(INTERVAL),
        "val_pass_s": Maybe(NUMBER),
        "val_pass_s_speedup": Maybe(INTERVAL),
    },
    {"train_samples_per_s_efficiency": Maybe(NUMBER)},
)
SCALING = Record({"table": ListOf(SCALING_ROW), "paths": ListOf(str), "counts": ListOf(int)})
SEARCH = Record({}, {"plan": Maybe(Record({"preset": str, "trials": int, "repeats": int}))})
MEDIANS = MapOf(Record({}, {"base": Maybe(NUMBER), "candidate": Maybe(NUMBER), "ceiling": Maybe(NUMBER)}))
QUALITY = Record(
    {},
    {
        "plan": Maybe(Record({"preset": str, "seeds": int})),
        "verification": Maybe(Record({"seeds": int, "metrics": MEDIANS, "detection_rate": MEDIANS})),
        "ttq_summary": Maybe(dict),
    },
)


# A worker's record as a partial record keeps it (bench/partial.py), in the fields the analysis
# reads: a failed worker's error, or phases whose figures are finite where they are numbers.
def _worker_record(value: Any) -> bool:
    import math

    if not isinstance(value, dict):
        return False
    if "error" in value:
        return isinstance(value["error"], str)
    phases = value.get("phases")
    if not isinstance(phases, dict) or not all(isinstance(p, dict) for p in phases.values()):
        return False
    numbers = [
        v for p in phases.values() for v in p.values() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return all(math.isfinite(v) for v in numbers) and isinstance(value.get("disk", {}), (dict, type(None)))


WORKER_RECORD = Test(_worker_record, "a worker record: {error: text} or {phases: {phase: {figure: finite number}}}")


COMPARE = Record(
    {
        "schema": str,
        "environment": ENVIRONMENT,
        "base": PATH,
        "candidate": PATH,
        "claims": ListOf(CLAIM),
        "ablations": ListOf(ABLATION),
        "preset": str,
        "rounds": int,
        "wall_s": NUMBER,
    },
    {
        "roles": ListOf(Record({"name": str})),
        "records": ListOf(dict),
        "search": Maybe(SEARCH),
        "scaling": Maybe(SCALING),
        "quality": Maybe(QUALITY),
        "sequential": Maybe(Record({}, {"confidence": Maybe(NUMBER), "stop": Maybe(str)})),
        "scale": Maybe(Record({"presets": ListOf(Record({"preset": str, "rows": ListOf(CLAIM)}))})),
    },
)
GPU = Record(
    {
        "environment": ENVIRONMENT,
        "claims": ListOf(CLAIM),
        "gpu": dict,
        "train": ListOf(dict),
        "preset": str,
        "wall_s": NUMBER,
    },
    {"cpu": Maybe(dict), "fit_peer": ListOf(dict), "data_parallel": ListOf(dict)},
)
REPEAT_RUN = Record(
    {"verdicts": MapOf(VERDICT), "intervals": MapOf(str)},
    {"rows": MapOf(Record({}, {"band": Maybe(PAIR), "claimed": Maybe(NUMBER), "family": Maybe(str)}))},
)
REPEAT = Record(
    {
        "runs": ListOf(REPEAT_RUN),
        "seconds": NUMBER,
        "agreement": MapOf(Record({"verdict": VERDICT, "agree": int, "runs": int})),
    },
    {"failed": list, "environment": dict, "machine": str},
)
PHASE_MEMORY = Record({"rss_growth_mib": NUMBER, "peak_rss_mib": NUMBER}, {"device_growth_mib": Maybe(NUMBER)})
MEMORY_JOB = Record({"path_spec": str, "batch": Maybe(int)}, {"phases": MapOf(PHASE_MEMORY), "disk": Maybe(dict)})
MEMORY = Record(
    {
        "plan": Record({"preset": str, "paths": ListOf(str), "batches": ListOf(int)}),
        "records": ListOf(MEMORY_JOB),
        "seconds": NUMBER,
        "footprint": Record({"params": int, "activations_per_sample": int, "bytes_per_value": int}),
    },
    {"load_average": Maybe(dict), "environment": Maybe(ENVIRONMENT)},
)
CALIBRATION_CHECK = Record({"metric": str, "measured": Maybe(INTERVAL), "passed": bool})
# One finished gate run as bench.calibrate's partial record keeps it (what ``summarise`` reads).
CALIBRATION_RUN = Record(
    {
        "kind": OneOf(("aa", "power")),
        "seconds": NUMBER,
        "fired": bool,
        "checks": ListOf(CALIBRATION_CHECK),
        "per_round": MapOf(ListOf(NUMBER)),
    }
)
# What bench.calibration_report's summary reads; every calibrate run writes all of it.
CALIBRATION = Record(
    {
        "machine": str,
        "commit": str,
        "command": str,
        "preset": str,
        "rounds": int,
        "tolerance": NUMBER,
        "meets_target": bool,
        "target": Record(
            {
                "aa_runs": int,
                "power_runs": int,
                "false_alarm_rate_upper95": NUMBER,
                "detection_rate": NUMBER,
                "seconds": NUMBER,
            }
        ),
        "aa_runs": int,
        "false_alarms": int,
        "false_alarm_rate_upper95": NUMBER,
        "power_runs": int,
        "detected": int,
        "detection_rate": NUMBER,
        "planted_slowdown": NUMBER,
        "planted_throughput_ratio": NUMBER,
        "post_hoc_at_tolerance": MapOf(Record({"false_alarms": int, "detected": int})),
        "runs": ListOf(Record({"kind": OneOf(("aa", "power")), "checks": ListOf(CALIBRATION_CHECK)})),
    },
    {
        "note": str,
        "seconds_per_run": Maybe(NUMBER),
        "planted_measured_train_ratio": Maybe(NUMBER),
        "per_round_log_sd": MapOf(Maybe(NUMBER)),
        "resumed_runs": Maybe(int),
        "pairing": str,
        "cpus": Maybe(int),
    },
)
# What the gate takes from a committed calibration that met its target (bench.gate_options.calibrated_defaults).
CALIBRATED = Record({"tolerance": NUMBER, "rounds": int}, {"pairing": str, "cpus": Maybe(int)})
BASELINE = Record(
    {
        "metrics": MapOf(Record({"ratio": NUMBER, "tolerance": NUMBER})),  # their bounds: bench.baseline.load
        "preset": str,
        "rounds": int,
        "paths": MapOf(Record({"spec": str}, {"knobs": Maybe(dict)})),
        "fingerprint": dict,
    },
    {"commit": Maybe(str)},
)


def read_checked(path: Path, flag: str, shape: Shape, *, schema: str | None = None, hint: str = "") -> dict[str, Any]:
    """Read a JSON record (``read_json_record``) and refuse it unless it has ``shape``.

    Raises:
        ConfigError: missing, not JSON, another schema, or a field of the wrong shape (named
            by its path, e.g. ``claims[3].ci[0]``).
    """
    record = read_json_record(path, flag, schema=schema, hint=hint)
    check(record, shape, f"{flag} {str(path)!r}")
    return record
