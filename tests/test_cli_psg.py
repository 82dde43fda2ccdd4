"""`sunrise psg inspect FILE [--json] [--stage-coding NAME]`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sunalgo.scores import SCORE_NAMES
from sunrise_assets.cli.app import app
from tests.conftest import real_file

runner = CliRunner()


def inspect_json(*args: str) -> dict:
    result = runner.invoke(app, ["psg", "inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_report_of_a_noxturnal_export():
    report = inspect_json(str(real_file("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv")))
    assert list(report) == ["format", "epochs", "stage_counts", "event_counts", "skipped", "scores"]
    assert report["skipped"] == []
    assert report["format"] == "noxturnal-csv" and report["epochs"] == 848
    assert list(report["stage_counts"]) == ["W", "N1", "N2", "N3", "REM", "unscored"]
    assert report["stage_counts"] == {"W": 169, "N1": 38, "N2": 354, "N3": 141, "REM": 146, "unscored": 0}
    assert report["event_counts"]["obstructive_apnea"] == 114 and report["event_counts"]["desaturation"] == 191
    assert tuple(report["scores"]) == SCORE_NAMES
    assert report["scores"]["total_sleep_time_min"] == 339.5
    assert report["scores"]["ahi"] == pytest.approx(204 / (339.5 / 60))


def test_json_report_of_an_integer_hypnogram_with_its_coding():
    report = inspect_json(str(real_file("yasa", "data_full_6hrs_100Hz_hypno_30s.txt")), "--stage-coding", "yasa")
    assert report["format"] == "hypnogram-text" and report["epochs"] == 720
    assert report["stage_counts"]["REM"] == 155
    assert report["scores"]["ahi"] is None, "a bare hypnogram scored no respiration"


def test_home_sleep_test_scores_are_null(tmp_path):
    path = tmp_path / "hst.csv"
    rows = [
        "Heure de début,Heure de fin,Événement,Durée,",
        "[],[],[],[s],",
        "31/12/2023 23:59:40,31/12/2023 23:59:40,Début de l'analyse,0,",
        "01/01/2024 00:10:00,01/01/2024 00:10:15,A. Obstructive,15,",
        "01/01/2024 01:00:00,01/01/2024 01:00:12,Hypopnée,12,",
        "01/01/2024 01:59:30,01/01/2024 01:59:40,Désat,10,",
    ]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-16"))
    report = inspect_json(str(path))
    assert report["epochs"] == 0 and report["stage_counts"] == dict.fromkeys(
        ["W", "N1", "N2", "N3", "REM", "unscored"], 0
    )
    assert report["scores"]["total_sleep_time_min"] is None and report["scores"]["sleep_efficiency_pct"] is None
    assert report["scores"]["ahi"] == pytest.approx(2 / 2.0)  # 2 events over the 2 h recorded


def test_human_output():
    path = real_file("nsrr_xml", "compumedics_profusion", "100022.xml")
    result = runner.invoke(app, ["psg", "inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "profusion-xml" in result.stdout and "1051 epochs" in result.stdout
    assert "W 171" in result.stdout and "hypopnea 175" in result.stdout and "total_sleep_time_min" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["{yasa}"], "integer hypnogram: its stage coding must be stated"),
        (["{yasa}", "--stage-coding", "aasm"], "unknown stage coding 'aasm'"),
        (["/nonexistent/study.xml"], "cannot read /nonexistent/study.xml"),
    ],
)
def test_user_errors_are_one_red_line(args, message):
    yasa_file = str(real_file("yasa", "data_full_6hrs_100Hz_hypno_30s.txt"))
    args = [a.replace("{yasa}", yasa_file) for a in args]
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run(
        [sys.executable, "-c", "from sunrise_assets.cli.app import main; main()", "psg", "inspect", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_every_option_has_help():
    result = runner.invoke(app, ["psg", "inspect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--json", "--stage-coding"):
        assert option in result.stdout
    assert "yasa" in result.stdout and "rk-5rem" in result.stdout
