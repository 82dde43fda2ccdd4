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


def _bench(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`sunrise bench` as a subprocess on a work directory of its own: (the process, its JSON)."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    env["SUNRISE_WORKDIR"] = str(tmp_path / "work")
    proc = subprocess.run(
        [sys.executable, "-m", "sunrise_assets.cli", "bench", *options, "--workdir", str(tmp_path / "bench")]
        + ["--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_bench_writes_every_figure(tmp_path):
    proc, result = _bench(tmp_path, "--nights", "3", "--naive-nights", "1")

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


def test_ingest_over_floor_is_the_median_of_pairs_measured_in_turn():
    from sunrise_assets.cli.bench import ingest_over_floor

    def ingest(wall: float, rc: int = 0) -> dict:
        runs = [{"started": 4.5}, {"started": 4.0}, {"started": None}]
        return {
            "wall_s": wall,
            "cpu_s": 2 * wall,
            "returncode": rc,
            "nights_materialized": 200,
            "timeline_s": {"runs": runs},
        }

    pairs = [({"wall_s": 40.0, "cpu_s": 70.0}, ingest(52.0)), ({"wall_s": 50.0, "cpu_s": 80.0}, ingest(60.0))]
    pairs.append(({"wall_s": 40.0, "cpu_s": 70.0}, ingest(60.0)))
    floor, median_ingest, summary = ingest_over_floor(pairs)
    assert [p["ratio_wall"] for p in summary["pairs"]] == [1.3, 1.2, 1.5]
    assert summary["median_wall"] == 1.3 and summary["median_pair"] == 1
    assert floor is pairs[0][0] and median_ingest is pairs[0][1] and summary["all_exited_0"]
    assert summary["pairs"][0]["first_night_run_started_s"] == 4.0
    # An even count: the median of the ratios, and the lower middle pair's figures.
    _, _, even = ingest_over_floor(pairs[:2])
    assert even["median_wall"] == 1.25 and even["median_pair"] == 2
    _, _, failed = ingest_over_floor([pairs[0], (pairs[1][0], ingest(60.0, rc=1))])
    assert not failed["all_exited_0"]


def test_the_2000_night_target_needs_every_night_done_and_says_when_it_is_extrapolated():
    from sunrise_assets.cli.bench import ingest_2000_target

    def result(nights: int, wall: float, rc: int = 0, done: int | None = None) -> dict:
        ingest = {"wall_s": wall, "returncode": rc, "nights_materialized": nights if done is None else done}
        return {"nights": nights, "ingest": ingest}

    measured = ingest_2000_target(result(2000, 452.7))
    assert (measured["measured"], measured["met"], measured["extrapolated"]) == (452.7, True, False)
    assert not ingest_2000_target(result(2000, 720.1))["met"]
    assert not ingest_2000_target(result(2000, 400.0, rc=1))["met"]
    assert not ingest_2000_target(result(2000, 400.0, done=1999))["met"]
    scaled = ingest_2000_target(result(200, 52.5))
    assert (scaled["measured"], scaled["met"], scaled["extrapolated"]) == (525.0, True, True)
    assert "x10.0 from 200 nights" in scaled["note"]


@pytest.mark.slow  # two `sunrise ingest` with their daemon children
def test_bench_measures_floor_and_ingest_in_turn(tmp_path):
    proc, result = _bench(tmp_path, "--nights", "2", "--phases", "floor,ingest", "--pairs", "2")
    pairs = result["ingest_over_floor"]["pairs"]
    assert len(pairs) == 2 and all(p["ingest_returncode"] == 0 and p["ingest_nights_materialized"] == 2 for p in pairs)
    ratios = [p["ingest_wall_s"] / p["floor_wall_s"] for p in pairs]
    assert result["ingest_over_floor"]["median_wall"] == pytest.approx(sum(ratios) / 2, abs=0.002)
    target, target_2000 = result["targets"]
    assert target["target"].startswith("sunrise ingest / floor") and "median of 2 pairs" in target["note"]
    median_ingest = pairs[result["ingest_over_floor"]["median_pair"] - 1]["ingest_wall_s"]
    assert target_2000["measured"] == pytest.approx(median_ingest * 1000, abs=0.1) and target_2000["extrapolated"]
    assert "targets" in proc.stdout
