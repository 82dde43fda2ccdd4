"""The model loop on a real instance: fit from the warehouse, card, promote, re-run what it affects.

Twelve generated nights go through the real pipeline (embedded default), then ``stage_model`` is
materialized. The model card's held-out metrics are recomputed here from the warehouse rows by
another route (plain numpy counts of the held-out subjects' epochs); promotion is checked by
running declarative automation to quiescence and counting materializations per asset.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import numpy as np
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, evaluate_automation_conditions

from sunalgo import model, subject_split
from sunalgo.features import FEATURE_NAMES
from sunalgo.labels import STAGES
from tests.conftest import use_embedded_workdir

N_NIGHTS = 12


@pytest.fixture(scope="module")
def loop_env(tmp_path_factory):
    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path_factory.mktemp("model-loop")
    with pytest.MonkeyPatch.context() as mp:
        use_embedded_workdir(work, mp)
        generate_bucket(work / "bucket", N_NIGHTS, seed=31)
        bucket = BucketResource(url=str(work / "bucket"))
        instance = DagsterInstance.get()
        report = ingest(bucket, instance)
        assert not report.failed
        yield {"work": work, "bucket": bucket, "instance": instance}
        instance.dispose()


def _warehouse(work) -> sqlite3.Connection:
    return sqlite3.connect(work / "warehouse.sqlite")


def _materializations(instance: DagsterInstance) -> Counter:
    counts: Counter = Counter()
    for key in instance.get_asset_keys():
        counts[key.to_user_string()] = len(
            instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=10_000).records
        )
    return counts


_CURSOR: dict = {}  # the automation cursor across calls, as the daemon keeps it across ticks


def _run_automation_to_quiescence(instance: DagsterInstance, rounds: int = 8) -> None:
    """What the daemon does: evaluate the conditions, run what they request, until nothing is requested."""
    from sunrise_assets.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_implicit_global_asset_job_def()
    nights = instance.get_dynamic_partitions("nights")
    for _ in range(rounds):
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=_CURSOR.get("cursor"))
        _CURSOR["cursor"] = result.cursor
        if result.total_requested == 0:
            return
        partitioned, unpartitioned = set(), set()
        for key in {r.key for r in result.results}:
            requested = result.get_requested_partitions(key)
            if requested:
                (unpartitioned if requested == {None} else partitioned).add(key)
        if partitioned:
            tags = {"dagster/asset_partition_range_start": nights[0], "dagster/asset_partition_range_end": nights[-1]}
            job.get_subset(asset_selection=partitioned).execute_in_process(instance=instance, tags=tags)
        if unpartitioned:
            job.get_subset(asset_selection=unpartitioned).execute_in_process(instance=instance)
    raise AssertionError("automation did not settle")


@pytest.fixture(scope="module")
def fitted(loop_env):
    from sunrise_assets.lib.model_ops import fit_model

    report = fit_model(loop_env["instance"])
    assert report.error is None, report.error
    return report.version


def test_fit_writes_content_addressed_params_and_a_card(loop_env, fitted):
    from sunrise_assets.domain import model_store

    bucket = loop_env["bucket"]
    data = bucket.read_bytes(model_store.params_path(fitted))
    assert model_store.version_of(data) == fitted
    card = model_store.load_card(bucket, fitted)
    assert card["model_version"] == fitted and card["features"] == list(FEATURE_NAMES)
    assert card["training"]["nights"] + card["held_out"]["n_nights"] == N_NIGHTS


def test_an_identical_refit_gives_the_same_version(loop_env, fitted):
    from sunrise_assets.lib.model_ops import fit_model

    assert fit_model(loop_env["instance"]).version == fitted


def test_no_subject_on_both_sides_and_the_card_is_recomputed_independently(loop_env, fitted):
    from sunrise_assets.domain import model_store

    bucket = loop_env["bucket"]
    card = model_store.load_card(bucket, fitted)
    params = json.loads(bucket.read_bytes(model_store.params_path(fitted)))
    stage_model = model.model_from_params(params)
    columns = ", ".join(f'"{n}"' for n in FEATURE_NAMES)
    with _warehouse(loop_env["work"]) as conn:
        nights = [r[0] for r in conn.execute("SELECT DISTINCT night_id FROM training_epochs")]
        held = [n for n in nights if subject_split.is_held_out(subject_split.subject_of(n))]
        train = [n for n in nights if n not in held]
        assert held and train
        assert not {subject_split.subject_of(n) for n in held} & {subject_split.subject_of(n) for n in train}
        assert card["held_out"]["n_nights"] == len(held) and card["training"]["nights"] == len(train)
        truth, predicted = [], []
        for night in held:
            rows = conn.execute(
                f"SELECT {columns}, psg_stage FROM training_epochs WHERE night_id = ? ORDER BY epoch", (night,)
            ).fetchall()
            x = np.array([[np.nan if v is None else v for v in r[:-1]] for r in rows], dtype=float)
            truth += [STAGES.index(r[-1]) if r[-1] in STAGES else -1 for r in rows]
            predicted += model.predict(x, stage_model).stage.tolist()
    truth, predicted = np.array(truth), np.array(predicted)
    both = (truth >= 0) & (predicted >= 0)
    t, p = truth[both], predicted[both]
    accuracy = float(np.mean(t == p))
    # Cohen's kappa from its definition: observed vs chance agreement of the two marginals.
    chance = sum(np.mean(t == s) * np.mean(p == s) for s in range(len(STAGES)))
    kappa = (accuracy - chance) / (1 - chance)
    assert card["held_out"]["n_epochs"] == int(both.sum())
    assert card["held_out"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert card["held_out"]["kappa_5class"] == pytest.approx(kappa, abs=1e-9)


def _production_snapshot(work) -> dict:
    """Every production object's bytes (hash) and every production warehouse row."""
    import hashlib

    bucket_dir = work / "bucket"
    files = {
        str(path.relative_to(bucket_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(bucket_dir.rglob("*"))
        if path.is_file() and not str(path.relative_to(bucket_dir)).startswith(("candidates/", "models/"))
    }
    with _warehouse(work) as conn:
        tables = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("epoch_features_long", "psg_epoch_labels", "training_epochs", "night_scores")
        }
    return {"files": files, "tables": tables}


def _cli(*args: str):
    from typer.testing import CliRunner

    from sunrise_assets.cli.app import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _degraded_params(tmp_path) -> str:
    """The shipped model with its stage weights permuted across stages: a worse model."""
    params = json.loads(model.DEFAULT_PARAMS_PATH.read_text())
    weights = np.asarray(params["stage_model"]["weights"])
    params["stage_model"]["weights"] = weights[:, [2, 4, 0, 1, 3]].tolist()
    path = tmp_path / "degraded.json"
    path.write_text(json.dumps(params))
    return str(path)


def test_candidates_are_compared_and_dropped_without_touching_production(loop_env, tmp_path):
    from sunrise_assets.domain import candidates

    work, bucket = loop_env["work"], loop_env["bucket"]
    before = _production_snapshot(work)
    nights = loop_env["instance"].get_dynamic_partitions("nights")
    night_args = [a for n in nights for a in ("--nights", n)]

    # equal to production: every change exactly 0, every verdict "no significant change"
    _cli("candidate", "run", "same", "--params", str(model.DEFAULT_PARAMS_PATH), *night_args, "--workdir", str(work))
    _cli("candidate", "compare", "same", "--workdir", str(work))
    same = candidates.load_comparison(bucket, "same")
    assert same["n_nights"] == N_NIGHTS
    rows = [*same["scores"].values(), *same["epochs"].values()]
    assert {r["verdict"] for r in rows} == {"no significant change"}
    for row in same["scores"].values():
        assert (
            row["mae_change"]["estimate"] == 0 and row["mae_change"]["ci_lower"] == row["mae_change"]["ci_upper"] == 0
        )
    for row in same["epochs"].values():
        assert row["change"]["estimate"] == 0 and row["change"]["ci_lower"] == row["change"]["ci_upper"] == 0

    # degraded: worse kappa and accuracy, the CI of the change below 0
    report_path = tmp_path / "worse.json"
    _cli("candidate", "run", "worse", "--params", _degraded_params(tmp_path), *night_args, "--workdir", str(work))
    output = _cli("candidate", "compare", "worse", "--json", str(report_path), "--workdir", str(work))
    worse = json.loads(report_path.read_text())
    for metric in ("kappa_5class", "accuracy"):
        row = worse["epochs"][metric]
        assert row["verdict"] == "worse" and row["change"]["ci_upper"] < 0, (metric, row)
    assert "worse" in output
    with _warehouse(work) as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT candidate FROM candidate_scores")} == {"same", "worse"}

    # both commands computed nothing in their own process: runs of backfills the daemon launched
    import os

    instance = loop_env["instance"]
    for what in ("gold", "comparison"):
        key = AssetKey(["candidate", "worse", what])
        record = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1).records[0]
        assert instance.get_run_by_id(record.run_id).tags.get("dagster/backfill"), what
        assert record.event_log_entry.dagster_event.pid != os.getpid(), what

    # the candidates' assets are in the code location, beside production
    from sunrise_assets.definitions import build_defs

    keys = {k.to_user_string() for k in build_defs().resolve_asset_graph().get_all_asset_keys()}
    assert {"candidate/same/gold", "candidate/worse/comparison"} <= keys

    for name in ("same", "worse"):
        output = _cli("candidate", "drop", name, "--workdir", str(work))
        assert f"dropped candidate {name}" in output
        assert not any(o.path.startswith(f"candidates/{name}/") for o in bucket.list("candidates/"))
    with _warehouse(work) as conn:
        assert conn.execute("SELECT COUNT(*) FROM candidate_scores").fetchone()[0] == 0
    assert _production_snapshot(work) == before


def test_fit_model_command_submits_a_run_to_the_instance(loop_env, fitted):
    """`sunrise fit-model` computes nothing in its own process: a run the daemon launches fits the
    model (the same data, so the same version), and the command prints its card."""
    import os

    output = _cli("fit-model", "--workdir", str(loop_env["work"]))
    assert f"Model {fitted}" in output and f"sunrise model promote {fitted}" in output
    instance = loop_env["instance"]
    record = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey("stage_model")), limit=1).records[0]
    run = instance.get_run_by_id(record.run_id)
    assert run.tags.get("dagster/backfill"), "a run of a backfill, submitted to the instance"
    assert record.event_log_entry.dagster_event.pid != os.getpid()  # computed in a run process


def test_promotion_reruns_exactly_what_the_model_affects(loop_env, fitted):
    from sunrise_assets.domain import model_store
    from sunrise_assets.lib.model_ops import promote

    instance, bucket = loop_env["instance"], loop_env["bucket"]
    _run_automation_to_quiescence(instance)  # whatever the ingest left for automation
    before = _materializations(instance)
    assert promote(instance, bucket, fitted) is True
    assert model_store.production_version(bucket) == fitted
    _run_automation_to_quiescence(instance)
    after = _materializations(instance)
    changed = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    per_night = {"epoch_predictions", "clinical_scores", "psg_agreement", "night_scores"}
    # the promotion itself (one reported materialization), then exactly what reads the predictions
    assert changed == {"production_model": 1, **{k: N_NIGHTS for k in per_night}, "validation_summary": 1}

    # every gold document and warehouse row now names the promoted model
    night = instance.get_dynamic_partitions("nights")[0]
    from sunrise_assets.domain import layout
    from sunrise_assets.domain.layer_files import read_json

    assert read_json(bucket, layout.gold_scores(night))["model_version"] == fitted
    with _warehouse(loop_env["work"]) as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT model_version FROM night_scores")} == {fitted}

    # promoting it again, or an identical refit, changes nothing
    assert promote(instance, bucket, fitted) is False
    _run_automation_to_quiescence(instance)
    assert _materializations(instance) == after


def test_lineage_names_the_model_of_a_night(loop_env, fitted):
    from sunrise_assets.cli.lineage import night_lineage

    instance = loop_env["instance"]
    night = instance.get_dynamic_partitions("nights")[-1]
    entries = {e["asset"]: e for e in night_lineage(instance, night)}
    assert entries["epoch_predictions"]["model_version"] in {fitted, _shipped()}
    assert entries["bronze_recording"]["inputs"] and entries["raw_night"]["data_version"]
    assert all("run_id" in e for e in entries.values())
    assert entries["training_epochs"]["inputs"].keys() == {"epoch_features_long", "psg_epoch_labels"}


def _shipped() -> str:
    from sunrise_assets.domain import model_store

    return model_store.shipped_version()


def test_production_model_key_is_a_dependency_of_predictions():
    from sunrise_assets.definitions import build_defs

    graph = build_defs().resolve_asset_graph()
    assert AssetKey("production_model") in graph.get(AssetKey("epoch_predictions")).parent_keys
