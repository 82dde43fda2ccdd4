"""The whole pipeline on the embedded default: raw bucket -> bronze -> silver -> gold -> warehouse."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from sunalgo.features import FEATURE_NAMES
from sunalgo.labels import STAGES
from sunrise_assets.domain.anonymise import NIGHT_KEY_RE, Pseudonymizer
from sunrise_assets.domain.raw_nights import night_sources
from tests.conftest import TEST_KEY


def _warehouse(work):
    return sqlite3.connect(work / "warehouse.sqlite")


def _truth_by_night(ingested):
    """Generated truth keyed by night key (through the same pairing and pseudonyms as ingest)."""
    report = ingested["report"]
    sources = night_sources(report.scan.nights, Pseudonymizer(TEST_KEY.encode()))
    by_recording = {n.recording_path: n for n in ingested["generation"].nights}
    return {key: by_recording[pair.recording.path] for key, pair in sources}


def test_every_paired_night_is_materialized(ingested):
    report, generation = ingested["report"], ingested["generation"]
    assert not report.failed, report.failed
    assert len(report.materialized) == len(generation.nights) == 5
    assert len(report.scan.unpaired_recordings) >= 1 and len(report.scan.unpaired_studies) >= 1


def test_training_epochs_one_row_per_epoch_and_psg_stage_is_the_truth(ingested):
    truth = _truth_by_night(ingested)
    with _warehouse(ingested["work"]) as db:
        nights = {r[0]: r[1] for r in db.execute("SELECT night_id, COUNT(*) FROM training_epochs GROUP BY night_id")}
        assert nights == {key: int(t.stages.size) for key, t in truth.items()}
        for key, t in truth.items():
            rows = db.execute(
                "SELECT epoch, psg_stage FROM training_epochs WHERE night_id = ? ORDER BY epoch", (key,)
            ).fetchall()
            assert [r[0] for r in rows] == list(range(t.stages.size))
            expected = [STAGES[c] if c >= 0 else None for c in t.stages.tolist()]
            assert [r[1] for r in rows] == expected
        columns = [r[1] for r in db.execute("PRAGMA table_info(training_epochs)")]
        assert columns == ["night_id", "epoch", *FEATURE_NAMES, "psg_stage", "psg_respiratory_event"]


def test_respiratory_flag_matches_generated_events(ingested):
    from sunalgo.labels import RESPIRATORY_EVENT_TYPES, events_to_epoch_mask

    truth = _truth_by_night(ingested)
    with _warehouse(ingested["work"]) as db:
        for key, t in truth.items():
            ev = t.events[t.events["type"].isin(RESPIRATORY_EVENT_TYPES)]
            expected = events_to_epoch_mask(ev["onset_s"].to_numpy(), ev["duration_s"].to_numpy(), t.stages.size)
            got = np.array(
                [
                    r[0]
                    for r in db.execute(
                        "SELECT psg_respiratory_event FROM training_epochs WHERE night_id = ? ORDER BY epoch", (key,)
                    )
                ]
            )
            np.testing.assert_array_equal(got.astype(bool), expected)


def test_training_features_equal_gold_parquet(ingested):
    """The SQL pivot returns exactly the values of the gold feature file."""
    from sunrise_assets.defs.gold import feature_matrix
    from sunrise_assets.domain import layout
    from sunrise_assets.domain.layer_files import read_parquet

    bucket = ingested["bucket"]
    with _warehouse(ingested["work"]) as db:
        for key in _truth_by_night(ingested):
            gold = feature_matrix(read_parquet(bucket, layout.gold_features(key)))
            cols = ", ".join(f'"{n}"' for n in FEATURE_NAMES)
            sql = np.array(
                db.execute(f"SELECT {cols} FROM training_epochs WHERE night_id = ? ORDER BY epoch", (key,)).fetchall(),
                dtype=float,
            )
            np.testing.assert_array_equal(np.isnan(sql), ~np.isfinite(gold))
            np.testing.assert_allclose(sql[np.isfinite(gold)], gold[np.isfinite(gold)], rtol=0, atol=0)


def test_night_scores_one_row_per_paired_night_with_psg_scores(ingested):
    truth = _truth_by_night(ingested)
    with _warehouse(ingested["work"]) as db:
        db.row_factory = sqlite3.Row
        rows = {r["night_id"]: r for r in db.execute("SELECT * FROM night_scores")}
    assert set(rows) == set(truth)
    for key, t in truth.items():
        tib = t.stages.size * 0.5
        assert rows[key]["psg_time_in_bed_min"] == pytest.approx(tib)
        sleep = np.isin(t.stages, [1, 2, 3, 4]).sum() * 0.5
        assert rows[key]["psg_total_sleep_time_min"] == pytest.approx(sleep)
        assert rows[key]["sunalgo_total_sleep_time_min"] is not None
        assert 0 <= rows[key]["agreement_accuracy"] <= 1


def test_partition_keys_are_pseudonyms(ingested):
    keys = ingested["instance"].get_dynamic_partitions("nights")
    assert len(keys) == 5
    assert all(NIGHT_KEY_RE.fullmatch(k) for k in keys)


def _identifier_variants(generation) -> set[bytes]:
    variants: set[bytes] = set()
    for value in generation.identifiers:
        for v in {value, value.upper(), value.replace(" ", "_"), value.replace(" ", "_").upper()}:
            if len(v) >= 4:
                variants.add(v.encode())
        for part in value.replace("_", " ").split():
            if len(part) >= 4 and not part.isdigit():
                variants.update({part.encode(), part.upper().encode()})
    return variants


def test_no_identifier_past_the_raw_layer(ingested):
    work, generation = ingested["work"], ingested["generation"]
    variants = _identifier_variants(generation)
    assert variants, "the generator wrote no identifiers to look for"
    raw = b"".join(p.read_bytes() for p in (work / "bucket" / "raw").rglob("*") if p.is_file())
    assert any(v in raw for v in variants), "identifiers must be present in raw for this test to mean anything"
    checked = 0
    for layer in ("bronze", "silver", "gold"):
        for path in (work / "bucket" / layer).rglob("*"):
            if path.is_file():
                checked += 1
                data = path.read_bytes()
                leaked = [v for v in variants if v in data or v in str(path).encode()]
                assert not leaked, f"{path} contains {leaked}"
    assert checked >= 5 * 10
    with _warehouse(work) as db:
        dump = "\n".join(db.iterdump()).encode()
    assert not [v for v in variants if v in dump]
    keys = "\n".join(ingested["instance"].get_dynamic_partitions("nights")).encode()
    assert not [v for v in variants if v in keys]


def test_second_ingest_reprocesses_nothing(ingested):
    from sunrise_assets.lib.ingest import ingest

    again = ingest(ingested["bucket"], ingested["instance"])
    assert again.run_ids == [] and again.materialized == [] and not again.failed
    assert len(again.up_to_date) == 5


def test_sunalgo_does_not_import_dagster():
    code = (
        "import sys, sunalgo, sunalgo.recording, sunalgo.preprocess, sunalgo.features, sunalgo.model, "
        "sunalgo.scores; print('dagster' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
