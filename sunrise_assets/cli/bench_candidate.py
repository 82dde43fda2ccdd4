"""`sunrise bench` phase ``candidate``: a parameters candidate over every night, run and compared.

It runs after the platform phase, on the platform run's work directory: bronze, silver and
production gold of every night are there, so the candidate reuses them (issue 15: "a candidate over
2,000 nights, run and compared, in at most 5 minutes on the 2-core machine, bronze and silver
reused"). The user's own commands, as subprocesses, each timed with its process tree:

1. ``sunrise candidate run bench_candidate --params P --all-nights``  (P: the shipped parameters
   with the stage weights scaled by 0.9, a model that differs from production's)
2. ``sunrise candidate compare bench_candidate --json R``

The share of each step splits each command into the asset body (the ``seconds`` metadata of the
candidate's gold and comparison materializations) and the rest (interpreter start, imports, loading
the definitions, Dagster's run bookkeeping). The bench module hands in its process-tree sampler
(this module does not import it: bench.py imports this one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sunrise_assets import settings

CANDIDATE = "bench_candidate"
TARGET_2000_NIGHTS_S = 5 * 60
WEIGHT_SCALE = 0.9


def candidate_params(path: Path) -> Path:
    """The shipped parameters with the stage model's weights scaled: a real, different candidate."""
    from sunalgo import model

    params = json.loads(model.DEFAULT_PARAMS_PATH.read_text())
    params["stage_model"]["weights"] = [[w * WEIGHT_SCALE for w in row] for row in params["stage_model"]["weights"]]
    path.write_text(json.dumps(params))
    return path


def _command(args: list[str], env: Mapping[str, str], log: Path, timeout_s: float) -> int | str:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sunrise_assets.cli", *args],
            env=dict(env),
            cwd=settings.REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "TIMEOUT"


def _latest_metadata(env: Mapping[str, str], what: str) -> dict[str, Any]:
    """The metadata of the candidate asset's latest materialization, read from the run's instance."""
    from dagster import AssetRecordsFilter, DagsterInstance

    from sunrise_assets.defs.candidate_assets import candidate_key

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with DagsterInstance.get() as instance:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=candidate_key(CANDIDATE, what)), limit=1
            ).records
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if not records:
        return {}
    return {k: v.value for k, v in records[0].event_log_entry.asset_materialization.metadata.items()}


def measure_candidate(
    root: Path,
    env: Mapping[str, str],
    sampler: Callable[[], Any],
    on_nights: Callable[[int], None],
    *,
    timeout_s: float,
) -> dict[str, Any]:
    """Run and compare a candidate over every night of the work directory ``root`` (the platform
    phase's); ``sampler()`` gives a fresh process-tree sampler (bench.TreeSampler)."""
    env = {**os.environ, **env, "CI": "true"}
    params, report_path, log = (
        root / "bench_candidate_params.json",
        root / "bench_candidate.json",
        root / "candidate.log",
    )
    candidate_params(params)
    workdir = ["--workdir", str(root)]
    steps: dict[str, Any] = {}
    began = time.perf_counter()
    with sampler() as whole:
        with sampler() as run_sampler:
            run_rc = _command(
                ["candidate", "run", CANDIDATE, "--params", str(params), "--all-nights", *workdir], env, log, timeout_s
            )
        with sampler() as compare_sampler:
            compare_rc = _command(
                ["candidate", "compare", CANDIDATE, "--json", str(report_path), *workdir], env, log, timeout_s
            )
    wall_total = time.perf_counter() - began
    gold, comparison = _latest_metadata(env, "gold"), _latest_metadata(env, "comparison")
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    nights = int(gold.get("nights") or 0)
    on_nights(nights)
    compute = {"gold": float(gold.get("seconds") or 0.0), "comparison": float(comparison.get("seconds") or 0.0)}
    for step, sampled, body in (("run", run_sampler, "gold"), ("compare", compare_sampler, "comparison")):
        steps[f"{body} (asset body)"] = {"wall_s": round(compute[body], 2)}
        steps[f"{step} command, the rest (start, imports, definitions, run bookkeeping)"] = {
            "wall_s": round(max(sampled.wall - compute[body], 0.0), 2)
        }
    for value in steps.values():
        value["share_pct"] = round(100 * value["wall_s"] / wall_total, 1) if wall_total else None
    figures = whole.figures(nights)
    figures.update(
        {
            "method": (
                f"`sunrise candidate run {CANDIDATE} --params P --all-nights` then `sunrise candidate compare "
                f"{CANDIDATE} --json R`, subprocesses on the platform phase's work directory (its bronze, silver and "
                "gold reused); P = shipped parameters, stage weights x0.9. wall_s = run start -> compare exit"
            ),
            "returncodes": {"run": run_rc, "compare": compare_rc},
            "run_wall_s": round(run_sampler.wall, 2),
            "compare_wall_s": round(compare_sampler.wall, 2),
            "cpu_s_by_command": {"run": run_sampler.cpu_seconds(), "compare": compare_sampler.cpu_seconds()},
            "compared_nights": report.get("n_nights"),
            "compared_subjects": report.get("n_subjects"),
            "verdicts": {k: v["verdict"] for k, v in report.get("epochs", {}).items()},
            "steps": steps,
            "log": str(log),
        }
    )
    return figures


def candidate_target(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's target: 2,000 nights run and compared in at most 5 minutes (linear from fewer nights)."""
    n = figures["nights"]
    # The asset bodies grow with the nights; the rest of the two commands (interpreter, imports,
    # definitions, one run each) does not: only the bodies are scaled.
    bodies = sum(v["wall_s"] for k, v in figures["steps"].items() if "asset body" in k)
    measured = round(figures["wall_s"] - bodies + bodies * 2000 / n, 1) if n else None
    ok = (
        measured is not None and measured <= TARGET_2000_NIGHTS_S and figures["returncodes"] == {"run": 0, "compare": 0}
    )
    return {
        "target": "candidate over 2,000 nights, run and compared",
        "goal": f"<= {TARGET_2000_NIGHTS_S} s",
        "measured": measured,
        "met": bool(ok),
        "extrapolated": n < 2000,
        "note": ("" if n >= 2000 else f"from {n} nights: the asset bodies x{2000 / n:.1f}, the commands' rest as is; ")
        + f"run {figures['run_wall_s']} s + compare {figures['compare_wall_s']} s",
    }


def print_candidate(figures: Mapping[str, Any], console) -> None:
    from rich.table import Table

    console.print(
        f"[bold]candidate[/] over {figures['nights']} nights: {figures['wall_s']} s wall, {figures['cpu_s']} s CPU, "
        f"{figures['nights_per_s']} nights/s (run {figures['run_wall_s']} s, compare {figures['compare_wall_s']} s; "
        f"{figures['compared_nights']} nights compared; exit {figures['returncodes']}; load "
        f"{figures['load_average_before'][0]} -> {figures['load_average_after'][0]})"
    )
    table = Table(title="candidate: share of each step (wall)")
    for column in ("step", "wall s", "% of phase"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step, value in figures["steps"].items():
        table.add_row(step, str(value["wall_s"]), str(value["share_pct"]))
    console.print(table)
    cpu = figures["cpu_s_by_command"]
    console.print(f"  candidate CPU s: run {cpu['run']}, compare {cpu['compare']}; {figures['method']}")
