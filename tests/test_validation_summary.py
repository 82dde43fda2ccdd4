"""validation_summary: the cross-night Bland-Altman summary, recomputed independently from the
per-night gold documents (on hand-made nights, then on the pipeline's own)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from resources.bucket import BucketResource
from sunalgo import agreement, scores
from sunrise_assets.defs import validation_summary as summary
from sunrise_assets.domain import layout
from sunrise_assets.domain.layer_files import read_json, write_json

SCORES = ("total_sleep_time_min", "sleep_efficiency_pct", "sleep_onset_latency_min", "waso_min", "ahi")
EPOCHS = 480


def _hypnogram(rng: np.random.Generator) -> np.ndarray:
    stages = np.repeat(rng.integers(0, 5, EPOCHS // 10), 10).astype(np.int8)
    stages[: rng.integers(2, 40)] = 0  # lights off awake
    stages[rng.random(EPOCHS) < 0.02] = -1  # a few unscored epochs
    return stages


def _write_night(
    bucket: BucketResource,
    night: str,
    psg: np.ndarray,
    predicted: np.ndarray,
    *,
    hst: bool = False,
    agreement_file: bool = True,
) -> tuple[dict, dict]:
    """The two gold documents of a night, in the layout clinical_scores and psg_agreement write."""
    psg_scores = (
        scores.clinical_scores(psg[:0], respiratory_events=12.0, recording_time_min=psg.size / 2)
        if hst
        else scores.clinical_scores(psg, respiratory_events=float(psg.size % 37))
    )
    clinical = {
        "night": night,
        "sunalgo_version": "0.1.0",
        "psg": psg_scores,
        "sunalgo": scores.clinical_scores(predicted, respiratory_events=float(predicted.size % 29)),
    }
    cm = agreement.confusion_matrix(np.full_like(psg, -1) if hst else psg, predicted)
    doc = {
        "night": night,
        **agreement.agreement_from_confusion(cm),
        **agreement.score_bias(clinical["psg"], clinical["sunalgo"]),
        "confusion_matrix": cm.tolist(),
    }
    write_json(bucket, layout.gold_scores(night), clinical)
    if agreement_file:
        write_json(bucket, layout.gold_agreement(night), doc)
    return clinical, doc


@pytest.fixture
def nights(tmp_path):
    rng = np.random.default_rng(17)
    bucket = BucketResource(url=str(tmp_path / "bucket"))
    hypnograms = {}
    for i in range(7):
        night = f"sub-{i:08x}_ses-2024010{i + 1}"
        psg = _hypnogram(rng)
        predicted = np.where(rng.random(EPOCHS) < 0.7, psg, rng.integers(0, 5, EPOCHS)).astype(np.int8)
        if i == 3:
            predicted[:] = 0  # sunalgo saw no sleep: SOL and WASO None, TST 0, left out of SOL only
        _write_night(bucket, night, psg, predicted)
        hypnograms[night] = (psg, predicted)
    hst = "sub-000000aa_ses-20240120"  # home sleep test: events, no staging
    _write_night(bucket, hst, np.full(EPOCHS, -1, dtype=np.int8), _hypnogram(rng), hst=True)
    broken = "sub-000000bb_ses-20240121"  # psg_agreement never written
    _write_night(bucket, broken, _hypnogram(rng), _hypnogram(rng), agreement_file=False)
    gone = "sub-000000cc_ses-20240122"  # registered, nothing in gold yet
    leftover = "sub-000000dd_ses-20240123"  # gold files of a night that is not registered (not counted)
    _write_night(bucket, leftover, _hypnogram(rng), _hypnogram(rng))
    registered = [*hypnograms, hst, broken, gone]
    return {"bucket": bucket, "hypnograms": hypnograms, "registered": registered, "hst": hst}


def _same_scores(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for score in want:
        assert got[score] == pytest.approx(want[score]), score


def _expected(bucket: BucketResource, used: list[str], hypnograms: dict) -> dict:
    """The summary from the per-night JSONs and the hypnograms, without the asset's code."""
    docs = [read_json(bucket, layout.gold_scores(n)) for n in used]
    per_night = [read_json(bucket, layout.gold_agreement(n)) for n in used]
    pooled = agreement.epoch_agreement(
        np.concatenate([hypnograms[n][0] for n in used]), np.concatenate([hypnograms[n][1] for n in used])
    )
    means = {
        m: np.mean([d[m] for d in per_night if d[m] is not None])
        for m in ("accuracy", "kappa_5class", "kappa_sleep_wake")
    }
    return {
        "scores": agreement.validation_summary([d["psg"] for d in docs], [d["sunalgo"] for d in docs], SCORES),
        "pooled": pooled,
        "means": means,
    }


def test_summary_equals_sunalgo_validation_summary_of_the_nights(nights, monkeypatch):
    monkeypatch.setattr(summary, "READ_CHUNK", 3)  # several chunks over the nights
    bucket, hypnograms = nights["bucket"], nights["hypnograms"]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("nights", nights["registered"])
        result = materialize([summary.validation_summary], instance=instance, resources={"bucket": bucket})
        assert result.success
        metadata = result.asset_materializations_for_node("validation_summary")[0].metadata

    document = read_json(bucket, layout.gold_validation_summary())
    expected = _expected(bucket, sorted(hypnograms), hypnograms)
    assert document["nights"] == {"registered": 10, "used": 7, "without_staging": 1, "missing_gold_files": 2}
    _same_scores(document["scores"], expected["scores"])
    assert document["scores"]["total_sleep_time_min"]["n"] == 7
    assert document["scores"]["sleep_onset_latency_min"]["n"] == 6, "the night without predicted sleep has no SOL"
    assert document["scores"]["ahi"]["n"] == 6, "nor an AHI (per hour of sleep)"
    pooled = document["epoch_agreement"]["pooled"]
    assert pooled["nights"] == 7 and pooled == pytest.approx({"nights": 7, **expected["pooled"]})
    for metric, mean in expected["means"].items():
        assert document["epoch_agreement"]["mean_over_nights"][metric]["mean"] == pytest.approx(mean)

    tst = expected["scores"]["total_sleep_time_min"]
    assert metadata["nights"].value == 7 and metadata["nights_missing_gold_files"].value == 2
    assert metadata["tst_bias_min"].value == pytest.approx(tst["bias"], abs=1e-3)
    assert metadata["tst_loa_lower_min"].value == pytest.approx(tst["loa_lower"], abs=1e-3)
    assert metadata["tst_loa_upper_min"].value == pytest.approx(tst["loa_upper"], abs=1e-3)
    assert isinstance(metadata["se_bias_pct"].value, float) and "ahi_bias_per_h" in metadata
    table = metadata["summary"].value
    assert "| TST (min) | 7 |" in table and "| SOL (min) | 6 |" in table and "kappa" in table


def test_summary_is_deterministic_and_empty_without_nights(nights):
    bucket = nights["bucket"]
    first = summary.summarise(bucket, nights["registered"])
    again = summary.summarise(bucket, list(reversed(nights["registered"])))
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    empty = summary.summarise(bucket, [])
    assert empty["nights"]["used"] == 0 and empty["scores"]["total_sleep_time_min"]["bias"] is None
    assert "| TST (min) | 0 |" in summary.markdown_table(empty)


def test_pipeline_summary_matches_its_nights(ingested):
    """After `ingest`, the summary covers every night, from the nights' own gold documents."""
    bucket, instance = ingested["bucket"], ingested["instance"]
    nights = sorted(ingested["report"].materialized)
    assert ingested["report"].summary_run_id and ingested["report"].summary_error is None
    assert instance.get_latest_materialization_event(AssetKey("validation_summary")) is not None
    document = read_json(bucket, layout.gold_validation_summary())
    docs = [read_json(bucket, layout.gold_scores(n)) for n in nights]
    assert document["nights"]["used"] == len(nights) == 5
    _same_scores(
        document["scores"], agreement.validation_summary([d["psg"] for d in docs], [d["sunalgo"] for d in docs], SCORES)
    )
    cms = sum(np.asarray(read_json(bucket, layout.gold_agreement(n))["confusion_matrix"]) for n in nights)
    assert document["epoch_agreement"]["pooled"]["n_epochs"] == int(cms.sum()) > 0
