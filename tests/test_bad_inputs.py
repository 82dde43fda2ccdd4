"""The bad-input corpus (tests/support/bad_inputs.py) through the real pipeline, in ONE batch with good nights.

Each bad input is a generated night with one file broken. All of them land in one bucket beside three
good nights and go through `ingest` (scan, registration, batched Dagster runs). For every bad input:

- a pair that is still a night fails ALONE, with a message naming the night, the file (by role, or
  the bronze path) and the problem, visible in the Dagster event log (the UI) of its run;
- an unreadable file is a scan problem naming the raw file and the problem (raw layer only);
- files that do not make a night are reported as unpaired;
and every good night of the batch is materialized, in every table.
"""

from __future__ import annotations

import sqlite3

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._serdes import serialize_value

from sunrise_assets.domain.anonymise import Pseudonymizer
from sunrise_assets.domain.raw_nights import night_sources
from tests.conftest import TEST_KEY
from tests.support.bad_inputs import CORPUS, build_corpus, scratch_dir

N_GOOD = 3
ALL_ASSETS = (
    "bronze_recording",
    "bronze_psg",
    "night_manifest",
    "silver_signals",
    "psg_hypnogram",
    "psg_respiratory_events",
    "epoch_features",
    "epoch_predictions",
    "clinical_scores",
    "psg_agreement",
    "epoch_features_long",
    "psg_epoch_labels",
    "training_epochs",
    "night_scores",
)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.lib.ingest import ingest

    with scratch_dir(tmp_path_factory.mktemp("bad_inputs")) as work, pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "SUNRISE_WORKDIR": str(work),
            "SUNRISE_PSEUDONYM_KEY": TEST_KEY,
            "DAGSTER_HOME": str(work / "dagster_home"),
            "SUNRISE_BUCKET": "",
            "SUNRISE_WAREHOUSE_URL": "",
        }.items():
            mp.setenv(k, v)
        settings.use_workdir(work)
        corpus = build_corpus(work / "bucket", N_GOOD, seed=5)
        bucket = BucketResource(url=str(work / "bucket"))
        with DagsterInstance.get() as instance:
            report = ingest(bucket, instance, batch_size=50)
            keys = {
                pair.recording.path: key
                for key, pair in night_sources(report.scan.nights, Pseudonymizer(TEST_KEY.encode()))
            }
            step_failures = [
                e.dagster_event.step_failure_data.user_failure_data.description
                for run_id in report.run_ids
                for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
                if e.dagster_event.step_failure_data.user_failure_data is not None
            ]
            event_log = "\n".join(serialize_value(e) for run_id in report.run_ids for e in instance.all_logs(run_id))
            materialized = {a: set(instance.get_materialized_partitions(AssetKey(a))) for a in ALL_ASSETS}
        with sqlite3.connect(work / "warehouse.sqlite") as db:
            tables = {
                t: {r[0] for r in db.execute(f"SELECT DISTINCT night_id FROM {t}")}
                for t in ("training_epochs", "night_scores", "epoch_features_long", "psg_epoch_labels")
            }
        yield {
            "corpus": corpus,
            "report": report,
            "keys": keys,
            "step_failures": step_failures,
            "event_log": event_log,
            "materialized": materialized,
            "tables": tables,
            "work": work,
        }


EXPECTED = {"night": "night failed", "problem": "scan problem", "unpaired": "unpaired", "handled": "materialized"}


def _case(corpus_run, name):
    return next(c for c in corpus_run["corpus"].cases if c.bad.name == name)


def outcome(corpus_run, case) -> tuple[str, str | None]:
    """(what happened, the message) for one bad input."""
    report, keys = corpus_run["report"], corpus_run["keys"]
    key = keys.get(case.recording_path)
    if key is not None:
        if key in report.failed:
            return "night failed", report.failed[key]
        return ("materialized" if key in report.materialized else "not run"), None
    watched = case.recording_path if case.bad.file == "recording" else case.study_dir
    problems = [p for p in report.scan.problems if p.startswith(watched)]
    if problems:
        return "scan problem", problems[0]
    unpaired = case.recording_path in {r.path for r in report.scan.unpaired_recordings} and case.study_dir in {
        s.dir for s in report.scan.unpaired_studies
    }
    return ("unpaired" if unpaired else "unaccounted"), None


@pytest.mark.parametrize("name", [b.name for b in CORPUS])
def test_bad_input_gives_a_clear_error(corpus_run, name):
    case = _case(corpus_run, name)
    bad = case.bad
    what, message = outcome(corpus_run, case)
    expected = EXPECTED[bad.expect]
    assert what == expected, f"{bad.name} ({bad.what}): expected {expected}, got {what}: {message}"
    if bad.expect == "handled":  # accepted, and nothing of the patient reaches bronze
        night = corpus_run["keys"][case.recording_path]
        bronze = b"".join(p.read_bytes() for p in (corpus_run["work"] / "bucket" / "bronze" / night).iterdir())
        assert bronze and not [
            w for w in case.template_name.split() if w.encode() in bronze or w.upper().encode() in bronze
        ]
    if bad.expect == "night":
        night = corpus_run["keys"][case.recording_path]
        assert message.startswith(f"night {night}: "), message
        assert bad.role.format(night=night) in message, message
        # visible in the UI: the failed step of its run carries the message
        assert any(message in d for d in corpus_run["step_failures"]), message
        # never a raw path or patient reference in a message that reaches the Dagster logs
        assert "raw/" not in message and "BAD-" not in message and case.template_name.split()[-1] not in message, (
            message
        )
    elif bad.expect == "problem":
        watched = case.recording_path if bad.file == "recording" else case.study_dir
        assert message.startswith(watched), message  # the raw layer's own report names the file
    for words in bad.says:
        assert words in message.lower(), f"{bad.name}: {words!r} not in {message!r}"


def test_every_good_night_of_the_batch_is_materialized(corpus_run):
    report, keys = corpus_run["report"], corpus_run["keys"]
    good = {keys[n.recording_path] for n in corpus_run["corpus"].generation.nights}
    assert len(good) == N_GOOD
    assert good <= set(report.materialized), report.failed
    for asset, nights in corpus_run["materialized"].items():
        assert good <= nights, f"{asset} lacks good nights {good - nights}"
    bad_nights = {
        keys[c.recording_path]
        for c in corpus_run["corpus"].cases
        if c.recording_path in keys and c.bad.expect != "handled"
    }
    for table, nights in corpus_run["tables"].items():
        assert good <= nights, table
        # (psg_epoch_labels may hold a bad-recording night's PSG labels: they are sound, and nothing pairs them)
        if table != "psg_epoch_labels":
            assert not nights & bad_nights, f"{table} holds bad nights {nights & bad_nights}"
    # a bad night never reaches silver: nothing downstream runs for it
    assert not bad_nights & corpus_run["materialized"]["epoch_features"]


def test_no_identifier_in_the_dagster_event_log(corpus_run):
    """Every message of every run of the batch (what the UI shows) is free of the raw side's identifiers."""
    log = corpus_run["event_log"]
    generation = corpus_run["corpus"].generation
    needles = {v for v in generation.identifiers if len(v) >= 5} | {"BAD-", "corpus-lab", "raw/sunrise", "raw/psg"}
    found = sorted(n for n in needles if n in log)
    assert not found, f"identifiers in the Dagster event log: {found}"


def test_figure(corpus_run, capsys):
    """The closing figure: bad inputs tried, how many gave a clear error, good nights lost."""
    rows, clear, handled = [], 0, 0
    for case in corpus_run["corpus"].cases:
        what, message = outcome(corpus_run, case)
        ok = what == EXPECTED[case.bad.expect] and all(w in (message or "").lower() for w in case.bad.says)
        clear += ok and case.bad.expect != "handled"
        handled += ok and case.bad.expect == "handled"
        rows.append(
            f"  {'ok ' if ok else 'BAD'} {case.bad.name:<26} {what:<13} {(message or '').split(': ', 2)[-1][:90]}"
        )
    good = {corpus_run["keys"][n.recording_path] for n in corpus_run["corpus"].generation.nights}
    lost = len(good - set(corpus_run["report"].materialized))
    with capsys.disabled():
        print(
            f"\nbad-input corpus: {len(rows)} tried, {clear} clear errors, {handled} accepted without a leak, "
            f"{lost} of {len(good)} good nights lost"
        )
        print("\n".join(rows))
    assert clear + handled == len(rows) and lost == 0


# ------------------------------------------------------------------- hostile identifiers and SQL

HOSTILE = ['x"; DROP TABLE night_scores; --', "Feature", "1abc", "a b", "a-b", "", "ä", "x" * 64, "night_id\x00"]


@pytest.mark.parametrize("name", HOSTILE)
def test_sql_identifiers_are_validated(name):
    from resources.sql_warehouse import identifier

    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        identifier(name)


def _warehouse(tmp_path):
    from resources.sql_warehouse import WarehouseResource
    from sunalgo.features import FEATURE_NAMES
    from sunrise_assets.defs.warehouse import SCORE_COLUMNS

    wh = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}")
    wh.ensure_schema(FEATURE_NAMES, SCORE_COLUMNS)
    return wh


def test_hostile_feature_names_and_score_columns_never_reach_sql(tmp_path):
    import numpy as np

    from sunalgo.features import FEATURE_NAMES

    wh = _warehouse(tmp_path)
    night = "sub-00000000_ses-20240101"
    with pytest.raises(ValueError):
        wh.ensure_schema([*FEATURE_NAMES, 'v" DOUBLE PRECISION); DROP TABLE night_scores; --'], ["psg_ahi"])
    with pytest.raises(ValueError):
        wh.replace_night_scores(
            night, {"sunalgo_version": "1", 'psg_ahi") VALUES (1); DROP TABLE epoch_features_long; --': 1.0}
        )
    with pytest.raises(ValueError):
        wh.rebuild_training_epochs(night, ['breath_rate", (SELECT 1)) --'])
    assert wh.replace_night_features(night, FEATURE_NAMES[:2], np.ones((3, 2))) == 6
    tables = {r["name"] for r in wh.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"night_scores", "epoch_features_long", "training_epochs", "psg_epoch_labels"} <= tables


def test_values_are_bound_parameters_never_sql(tmp_path):
    """A hostile night id handed straight to the warehouse (below the key validation) is data, not SQL."""
    import numpy as np

    from sunalgo.features import FEATURE_NAMES
    from sunrise_assets.cli.export import ExportError, export_training

    wh = _warehouse(tmp_path)
    hostile = "x'); DROP TABLE epoch_features_long; --"
    assert wh.replace_night_features(hostile, FEATURE_NAMES[:1], np.ones((2, 1))) == 2
    assert wh.query("SELECT DISTINCT night_id FROM epoch_features_long") == [{"night_id": hostile}]
    wh.replace_night_labels("sub-00000000_ses-20240101", ["W", "N2"], np.zeros(2))
    wh.rebuild_training_epochs("sub-00000000_ses-20240101", FEATURE_NAMES)
    with pytest.raises(ExportError, match="not in training_epochs"):
        export_training(tmp_path / "out.parquet", ["nobody' OR '1'='1"], warehouse_url=wh.url)
    assert wh.query("SELECT COUNT(*) AS n FROM epoch_features_long")[0]["n"] == 2


@pytest.mark.parametrize(
    "key",
    [
        "sub-00000000_ses-20240101'; DROP TABLE night_scores; --",
        "../../raw_index/x",
        "P-000123",
        "sub-00000000_ses-20240101\n",
        "SUB-00000000_ses-20240101",
    ],
)
def test_hostile_partition_key_fails_its_night_before_any_work(key):
    """A partition key added by hand (the UI allows it) is refused by every asset before it reaches a
    path or SQL: the night fails with a message naming it; process() never sees it."""
    import logging
    from types import SimpleNamespace

    from dagster import Failure

    from sunrise_assets.domain.layout import bronze_recording
    from sunrise_assets.lib.night_batches import per_night

    seen = []
    context = SimpleNamespace(
        selected_asset_keys=[AssetKey("bronze_recording")], partition_keys=[key], log=logging.getLogger("test")
    )
    with pytest.raises(Failure) as failure:
        list(per_night(context, seen.append))
    assert seen == [] and "is not a night key" in failure.value.description
    with pytest.raises(ValueError):
        bronze_recording(key)


# ----------------------------------------------------------------------------- the pseudonym key


def test_production_refuses_to_run_without_a_key(tmp_path, monkeypatch):
    """No SUNRISE_PSEUDONYM_KEY: ingest refuses before writing anything; the public demo key is
    refused too unless the demo allowed it; the bronze step of a run fails, naming the variable."""
    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.domain.anonymise import ALLOW_DEMO_ENV, DEMO_KEY, KEY_ENV, MissingKeyError, Pseudonymizer
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import reconcile
    from sunrise_assets.lib.ingest import ingest, run_batch
    from sunrise_assets.lib.night_registry import register
    from sunrise_assets.synthetic.generate import generate_bucket

    for k, v in {
        "SUNRISE_WORKDIR": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SUNRISE_BUCKET": "",
        "SUNRISE_WAREHOUSE_URL": "",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(ALLOW_DEMO_ENV, raising=False)
    settings.use_workdir(tmp_path)
    generate_bucket(tmp_path / "bucket", 1, seed=2)
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    with DagsterInstance.get() as instance:
        with pytest.raises(MissingKeyError, match=KEY_ENV):
            ingest(bucket, instance)
        monkeypatch.setenv(KEY_ENV, DEMO_KEY)
        with pytest.raises(MissingKeyError, match="public demo key"):
            ingest(bucket, instance)
        assert instance.get_dynamic_partitions("nights") == [] and not (tmp_path / "bucket" / "raw_index").exists()

        # nights registered with a key, then a run (a daemon's, `dagster job execute`) without one
        register(reconcile(scan_bucket(bucket), bucket, Pseudonymizer(TEST_KEY.encode())), instance)
        monkeypatch.delenv(KEY_ENV)
        nights = instance.get_dynamic_partitions("nights")
        _, completed, failed = run_batch(instance, nights)
        assert completed == set() and set(failed) == set(nights)
        assert all("bronze_night" in m and KEY_ENV in m for m in failed.values()), failed
        assert not (tmp_path / "bucket" / "bronze").exists()


def test_demo_key_is_announced_loudly(monkeypatch, capsys):
    from sunrise_assets.domain.anonymise import ALLOW_DEMO_ENV, DEMO_KEY, KEY_ENV, load_key

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(ALLOW_DEMO_ENV, "1")  # what `sunrise demo` / `sunrise ui` set
    assert load_key() == DEMO_KEY.encode()
    assert "PUBLIC DEMO KEY" in capsys.readouterr().err


def test_cli_refuses_without_a_key_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from sunrise_assets.synthetic.generate import generate_bucket

    generate_bucket(tmp_path / "bucket", 1, seed=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUNRISE_", "DAGSTER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--workdir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "SUNRISE_PSEUDONYM_KEY is not set" in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "bucket" / "raw_index").exists()


# ---------------------------------------------------------------------------- log-safe messages


def test_raw_problem_masks_identifiers_and_paths():
    from sunrise_assets.domain.input_validation import raw_problem, redact

    ids = {"Renard", "Julie", "P-000123", "raw/psg/site/P-000123/P-000123_RENARD_20240101/x.edf", "2001-11-25"}
    exc = FileNotFoundError(2, "No such file", "/data/bucket/raw/psg/site/P-000123/P-000123_RENARD_20240101/x.edf")
    text = raw_problem(exc, "raw PSG EDF+", ids)
    assert "P-000123" not in text and "RENARD" not in text and "[redacted]" in text
    assert (
        redact("Sleep stage Julie; born 2001-11-25; sleep stage N2", ids)
        == "Sleep stage [redacted]; born [redacted]; sleep stage N2"
    )
    assert redact("asleep", {"Lee", "sleep"}) == "asleep"  # whole words only
    assert raw_problem(ValueError("raw PSG EDF+: bad"), "raw PSG EDF+") == "bad"
    assert raw_problem(KeyError("k"), "raw PSG EDF+") == "KeyError: 'k'"
