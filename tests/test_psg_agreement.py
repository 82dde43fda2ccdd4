"""psg_agreement per night: the score biases are sunalgo minus PSG of the gold clinical scores (read,
not recomputed), and they reach the night's metadata and the night_scores table."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, materialize

from resources.bucket import BucketResource
from sunalgo.agreement import BIAS_SCORES
from sunrise_assets.domain import layout
from sunrise_assets.domain.layer_files import read_json, read_parquet


def test_biases_are_predicted_minus_psg_of_the_gold_scores(ingested):
    bucket, instance = ingested["bucket"], ingested["instance"]
    nights = sorted(ingested["report"].materialized)
    with sqlite3.connect(ingested["work"] / "warehouse.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = {r["night_id"]: dict(r) for r in db.execute("SELECT * FROM night_scores")}
    for night in nights:
        clinical = read_json(bucket, layout.gold_scores(night))
        doc = read_json(bucket, layout.gold_agreement(night))
        assert set(BIAS_SCORES) == {"tst_bias_min", "se_bias_pct", "sol_bias_min", "waso_bias_min"}
        for key, score in BIAS_SCORES.items():
            psg, predicted = clinical["psg"][score], clinical["sunalgo"][score]
            assert doc[key] == (None if psg is None or predicted is None else predicted - psg), (night, key)
            assert rows[night][f"agreement_{key}"] == doc[key], (night, key)
        assert doc["tst_bias_min"] is not None and doc["tst_difference_min"] == doc["tst_bias_min"]

        # The confusion matrix, counted here from the night's two hypnograms.
        psg_stages = read_parquet(bucket, layout.silver_hypnogram(night)).column("stage_code").to_numpy()
        predicted_stages = read_parquet(bucket, layout.gold_predictions(night)).column("stage_code").to_numpy()
        counted = np.zeros((5, 5), dtype=int)
        for r, p in zip(psg_stages.tolist(), predicted_stages.tolist()):
            if r >= 0 and p >= 0:
                counted[r, p] += 1
        assert doc["confusion_matrix"] == counted.tolist() and counted.sum() == doc["n_epochs"]

        record = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("psg_agreement"), asset_partitions=[night]), limit=1
        ).records[0]
        metadata = record.asset_materialization.metadata
        for key in BIAS_SCORES:
            if doc[key] is not None:
                assert metadata[key].value == pytest.approx(doc[key], abs=1e-3), (night, key)


def test_psg_agreement_reads_the_scores_instead_of_recomputing_them(ingested, tmp_path, monkeypatch):
    """On a copy of one night's inputs, with sunalgo's clinical_scores made to fail: same bytes."""
    import sunalgo.scores
    from sunrise_assets.defs.gold import psg_agreement

    source, night = ingested["bucket"], sorted(ingested["report"].materialized)[0]
    copy = BucketResource(url=str(tmp_path / "bucket"))
    for path in (
        layout.silver_hypnogram(night),
        layout.silver_respiratory_events(night),
        layout.gold_predictions(night),
        layout.gold_scores(night),
    ):
        copy.write_bytes(path, source.read_bytes(path))

    def no_recompute(*args, **kwargs):
        raise AssertionError("psg_agreement recomputed clinical scores")

    monkeypatch.setattr(sunalgo.scores, "clinical_scores", no_recompute)
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("nights", [night])
        result = materialize(
            [psg_agreement], partition_key=night, instance=instance, resources={"bucket": copy}, raise_on_error=False
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert copy.read_bytes(layout.gold_agreement(night)) == source.read_bytes(layout.gold_agreement(night))
