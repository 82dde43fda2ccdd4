"""`sunrise bench` end to end on 3 nights: every figure is in the JSON (no timing is asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PHASE_FIGURES = (
    "nights",
    "wall_s",
    "cpu_s",
    "nights_per_s",
    "cpu_s_per_night",
    "peak_rss",
    "method",
    "load_average_before",
    "load_average_after",
)


def test_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    env["SUNRISE_WORKDIR"] = str(tmp_path / "work")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sunrise_assets.cli",
            "bench",
            "--nights",
            "3",
            "--naive-nights",
            "1",
            "--workdir",
            str(tmp_path / "bench"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["nights"] == 3
    for key in (
        "hostname",
        "cpu",
        "cores",
        "memory_gib",
        "python",
        "dagster",
        "load_average_at_start",
        "load_average_at_end",
    ):
        assert key in result["machine"], key
    for phase in ("floor", "ingest", "platform", "naive"):
        for key in PHASE_FIGURES:
            assert key in result[phase], (phase, key)
        assert result[phase]["peak_rss"]["max_mib"] > 0, phase
    assert result["floor"]["nights"] == result["platform"]["nights"] == 3
    assert result["floor"]["failed"] == {}
    assert result["platform"]["runs_failed"] == 0 and result["platform"]["nights_materialized"] == 3
    assert result["naive"]["extrapolated"] is True and result["naive"]["extrapolated_wall_s_for_all_nights"] > 0

    # Where time goes: every asset step, from the materializations' night_wall_s / night_cpu_s metadata.
    steps = {
        "bronze_night",
        "silver_signals",
        "psg_labels",
        "epoch_features",
        "epoch_predictions",
        "clinical_scores",
        "psg_agreement",
        "epoch_features_long",
        "psg_epoch_labels",
        "training_epochs",
        "night_scores",
    }
    for phase in ("floor", "platform"):
        share = result[phase]["asset_time_share"]
        assert steps <= set(share), (phase, steps - set(share))
        assert all(share[s]["cpu_s"] is not None and share[s]["wall_share_pct"] is not None for s in steps), (
            phase,
            share,
        )
        assert sum(share[s]["cpu_s"] for s in steps) > 0, (phase, share)

    inc = result["incremental"]
    for key in ("sensor_tick_s", "automation_s", "total_s", "runs_requested", "nights"):
        assert key in inc, key
    assert inc["runs_requested"] == 0 and inc["nights"] == 3

    assert result["sunalgo"]["nights_per_s_per_core"] > 0
    for key in ("platform_over_floor_wall", "platform_over_floor_cpu", "naive_over_platform_wall"):
        assert result["ratios"][key] is not None, key
    assert result["ingest"]["returncode"] == 0 and result["ingest"]["nights_materialized"] == 3
    assert result["ratios"]["ingest_over_floor_wall"] > 0
    # The command's timeline: every run of it, in order, inside the command's own wall time.
    timeline = result["ingest"]["timeline_s"]
    assert len(timeline["runs"]) == result["ingest"]["runs"] and timeline["backfills_submitted"]
    assert abs(timeline["exited"] - result["ingest"]["wall_s"]) < 1.0
    for run in timeline["runs"]:
        assert 0 < timeline["backfills_submitted"][0] <= run["created"] <= run["started"] <= run["ended"]
        assert run["ended"] < timeline["exited"] and run["backfill"]
    assert len(result["targets"]) == 8 and all("met" in t and "measured" in t for t in result["targets"])

    # The candidate phase: a parameters candidate over every night of the platform run, then compared.
    cand = result["candidate"]
    for key in PHASE_FIGURES:
        assert key in cand, key
    assert cand["returncodes"] == {"run": 0, "compare": 0}, cand["log"]
    assert cand["nights"] == 3 and cand["compared_nights"] == 3
    assert cand["verdicts"].keys() >= {"accuracy", "kappa_5class"}
    bodies = {k: v for k, v in cand["steps"].items() if "asset body" in k}
    assert len(bodies) == 2 and all(v["wall_s"] > 0 for v in bodies.values()), cand["steps"]
    assert sum(v["wall_s"] for v in cand["steps"].values()) == pytest.approx(cand["wall_s"], abs=0.5)
    assert cand["run_wall_s"] + cand["compare_wall_s"] <= cand["wall_s"] + 0.5 and cand["cpu_s"] > 0
    assert result["targets"][-1]["target"].startswith("candidate over 2,000 nights")
    assert result["phases"] == ["floor", "ingest", "platform", "incremental", "sunalgo", "candidate", "naive"]
    assert "platform / floor" in proc.stdout and "targets" in proc.stdout

    # The nights are cached: a second run generates nothing (the marker says how many of which seed).
    marker = json.loads((tmp_path / "bench" / "raw-cache" / "seed-7" / "generated.json").read_text())
    assert marker == {"nights": 3, "seed": 7}
    assert not (tmp_path / "bench" / "runs" / "floor").exists()  # measurement runs are removed without --keep


def test_phases_on_the_platform_run_need_the_platform_phase(tmp_path):
    from sunrise_assets.cli.bench import check_phases

    check_phases(["platform", "candidate"])
    with pytest.raises(ValueError, match="add platform"):
        check_phases(["floor", "candidate"])
    with pytest.raises(ValueError, match="unknown phases"):
        check_phases(["platform", "nope"])
