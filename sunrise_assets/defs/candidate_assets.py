"""Candidates in the UI: for each registered candidate, two assets under the key prefix
``candidate/<name>/`` (group ``candidates``), beside production in the lineage graph.

- ``candidate/<name>/gold``: the candidate model's predictions, clinical scores and agreement with
  the PSG for the candidate's nights, computed from production gold features and silver PSG labels
  exactly as production gold computes them (the same functions), written to the candidate's own
  namespace in the bucket (candidates/<name>/gold/) and in the warehouse (candidate_scores).
- ``candidate/<name>/comparison``: the candidate beside production on the same nights: bias and
  limits of agreement of each side, changes with paired subject-bootstrap CIs, verdicts, the nights
  that changed most (sunalgo.comparison), as JSON, a Markdown table and a picture.

A code candidate (``sunrise candidate run --sunalgo-ref/--sunalgo-tree``) computes its gold with its
own sunalgo package in a child process (lib/candidate_worker.py, domain/candidate_code.py): features
from production's silver signals, predictions, scores and agreement, all by the candidate's code;
the asset's code version is then the package's content hash, and its metadata names the ref, the
commit and the ``sunalgo.__file__`` the child imported.

The code location reads the registry (candidates/*/candidate.json) when it loads, so a new
candidate appears after `sunrise candidate run` (the UI's "Reload definitions" shows it).
"""

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Failure, MaterializeResult, MetadataValue, asset

import sunalgo
from resources.bucket import BucketResource
from resources.sql_warehouse import WarehouseResource
from sunalgo import comparison
from sunalgo.model_card import RECORD_SCORES, NightRecord
from sunalgo.subject_split import subject_of
from sunrise_assets import settings
from sunrise_assets.defs.gold import agreement_document, clinical_document, predict_night, psg_stages_of
from sunrise_assets.defs.warehouse import AGREEMENT_COLUMNS, ensure_schema
from sunrise_assets.domain import candidate_code, candidates, layout, model_store
from sunrise_assets.domain.comparison_picture import comparison_markdown
from sunrise_assets.domain.layer_files import read_json, write_json, write_parquet

CANDIDATES_GROUP = "candidates"


def candidate_key(name: str, what: str) -> AssetKey:
    return AssetKey(["candidate", candidates.check_name(name), what])


def score_candidate_night(
    bucket: BucketResource, name: str, night: str, stage_model, version: str, matrix: np.ndarray | None = None
) -> dict:
    """One night through the candidate model (on production's gold features unless ``matrix`` gives
    the candidate's own); its documents in the candidate's namespace."""
    _, table = predict_night(bucket, night, stage_model, version, matrix=matrix)
    write_parquet(bucket, candidates.predictions_path(name, night), table)
    # The PSG side is production's (silver labels do not depend on the model): read, not recomputed.
    clinical = clinical_document(night, table, read_json(bucket, layout.gold_scores(night))["psg"])
    write_json(bucket, candidates.scores_path(name, night), clinical)
    stage = table.column("stage_code").to_numpy().astype(np.int8)
    document = agreement_document(night, psg_stages_of(bucket, night), stage, clinical)
    write_json(bucket, candidates.agreement_path(name, night), document)
    return {"clinical": clinical, "agreement": document}


def night_record(night: str, clinical: dict, agreement: dict) -> NightRecord:
    """A night's record for the comparison, from its gold documents (either side)."""
    return NightRecord(
        night_id=night,
        subject=subject_of(night),
        predicted={s: clinical["sunalgo"].get(s) for s in RECORD_SCORES},
        psg={s: clinical["psg"].get(s) for s in RECORD_SCORES},
        confusion=np.asarray(agreement["confusion_matrix"], dtype=np.int64),
    )


def warehouse_rows(night: str, version: str, documents: dict) -> list[dict]:
    clinical, agreement = documents["clinical"], documents["agreement"]
    values = {f"sunalgo_{k}": v for k, v in clinical["sunalgo"].items()}
    values.update({f"agreement_{k}": agreement.get(k) for k in AGREEMENT_COLUMNS})
    return [{"night_id": night, "model_version": version, "score": k, "value": v} for k, v in values.items()]


def gold_by_candidate_code(bucket: BucketResource, candidate: candidates.Candidate) -> dict:
    """A code candidate's gold, computed by a child process that imports the candidate's sunalgo
    (extracted from the bucket's snapshot under the work dir); its result, checked to come from there."""
    tree = candidate.code["tree_sha256"]
    code_dir = candidates.local_code_dir(settings.workdir(), candidate.name, tree)
    candidate_code.extract(bucket.read_bytes(candidates.code_archive_path(candidate.name)), code_dir, tree)
    with tempfile.TemporaryDirectory(prefix="run-", dir=code_dir.parent) as scratch:
        params, out = Path(scratch) / "params.json", Path(scratch) / "result.json"
        params.write_bytes(model_store.params_data(bucket, candidate.model_version))
        command, env = candidate_code.worker_command(
            code_dir,
            *("--bucket-url", bucket.url, "--name", candidate.name),
            *("--params", str(params), "--model-version", candidate.model_version, "--out", str(out)),
        )
        proc = subprocess.run(command, cwd=code_dir, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise Failure(
                description=f"the process running the candidate's sunalgo exited {proc.returncode}:\n"
                + proc.stderr[-4000:]
            )
        result = json.loads(out.read_text())
    imported = Path(result["sunalgo_file"])
    if code_dir.resolve() not in imported.parents:
        raise Failure(description=f"the candidate's process imported {imported}, not the candidate's sunalgo")
    return result


def candidate_assets(name: str, candidate: candidates.Candidate | None = None) -> list[AssetsDefinition]:
    """The two assets of a candidate (``candidate``: its registry entry, for a code candidate's code version)."""
    gold_key, comparison_key = candidate_key(name, "gold"), candidate_key(name, "comparison")
    code = candidate.code if candidate is not None else None
    # A code candidate's gold is made by its own sunalgo: the package's content hash is its code version.
    gold_code_version = f"sunalgo-tree.{code['tree_sha256'][:16]}" if code else sunalgo.__version__
    made_by = f"sunalgo {candidate_code.describe(code)}" if code else "production sunalgo"

    @asset(
        key=gold_key,
        deps=["silver_signals" if code else "epoch_features", "psg_hypnogram", "clinical_scores", "stage_model"],
        group_name=CANDIDATES_GROUP,
        code_version=gold_code_version,
        kinds={"sunalgo", "parquet", "json", "sql"},
        description=(
            f"Candidate {name}: its model's predictions, clinical scores and agreement with the PSG on the "
            f"candidate's nights (candidates/{name}/gold/, table candidate_scores), by {made_by}, from production "
            + ("silver signals (its own features)." if code else "features.")
        ),
    )
    def candidate_gold(context: AssetExecutionContext, bucket: BucketResource, warehouse: WarehouseResource):
        candidate = candidates.load(bucket, name)
        ensure_schema(warehouse)
        began, rows, failed, code_metadata = time.perf_counter(), [], {}, {}
        if candidate.code:
            result = gold_by_candidate_code(bucket, candidate)
            rows, failed = result["rows"], result["failed"]
            for message in failed.values():
                context.log.error(message)
            code_metadata = {
                "sunalgo_code": candidate_code.describe(candidate.code),
                "sunalgo_tree_sha256": candidate.code["tree_sha256"],
                "sunalgo_commit": candidate.code.get("commit") or "",
                "sunalgo_file": result["sunalgo_file"],  # what the child imported: the proof
                "sunalgo_version": result["sunalgo_version"],
                "child_seconds": result["seconds"],
            }
        else:
            stage_model = model_store.load_stage_model(bucket, candidate.model_version)
            for night in candidate.nights:
                try:
                    documents = score_candidate_night(bucket, name, night, stage_model, candidate.model_version)
                except Exception as exc:  # noqa: BLE001 - a bad night fails alone, named
                    failed[night] = f"night {night}: {type(exc).__name__}: {exc}"
                    context.log.error(failed[night])
                    continue
                rows += warehouse_rows(night, candidate.model_version, documents)
        warehouse.replace_candidate_scores(name, rows)
        if failed:
            raise Failure(
                description=f"{len(failed)} of {len(candidate.nights)} nights failed:\n" + "\n".join(failed.values()),
                metadata={"failed_nights": MetadataValue.json(failed)},
            )
        return MaterializeResult(
            metadata={
                "model_version": candidate.model_version,
                "production_model_version": model_store.production_version(bucket),
                "nights": len(candidate.nights),
                "dagster/row_count": len(rows),
                "seconds": round(time.perf_counter() - began, 2),
                **code_metadata,
            }
        )

    @asset(
        key=comparison_key,
        deps=[gold_key, "clinical_scores", "psg_agreement"],
        group_name=CANDIDATES_GROUP,
        code_version=sunalgo.__version__,
        kinds={"sunalgo", "json"},
        description=(
            f"Candidate {name} beside production on the same nights: bias and 95 % limits of agreement of TST, SE, "
            "SOL, WASO and AHI against the PSG, changes with paired subject-bootstrap CIs, pooled kappa and "
            "accuracy, verdicts, and the nights that changed most."
        ),
    )
    def candidate_comparison(context: AssetExecutionContext, bucket: BucketResource):
        began = time.perf_counter()
        report = compare_with_production(bucket, name)
        verdicts = {k: v["verdict"] for k, v in report["scores"].items()}
        verdicts.update({k: v["verdict"] for k, v in report["epochs"].items()})
        return MaterializeResult(
            metadata={
                "comparison": MetadataValue.md(comparison_markdown(report, comparison.render_markdown(report))),
                "verdicts": MetadataValue.json(verdicts),
                "nights": report["n_nights"],
                "subjects": report["n_subjects"],
                "report": bucket.describe(candidates.comparison_path(name)),
                "seconds": round(time.perf_counter() - began, 2),
            }
        )

    return [candidate_gold, candidate_comparison]


def compare_with_production(bucket: BucketResource, name: str, n_boot: int = 2000) -> dict:
    """The comparison report of a candidate (written to candidates/<name>/comparison.json)."""
    candidate = candidates.load(bucket, name)
    production, cand, production_versions = [], [], set()
    for night in candidate.nights:
        production_scores = read_json(bucket, layout.gold_scores(night))
        production_versions.add(production_scores.get("model_version") or "unrecorded")
        production.append(night_record(night, production_scores, read_json(bucket, layout.gold_agreement(night))))
        cand.append(
            night_record(
                night,
                read_json(bucket, candidates.scores_path(name, night)),
                read_json(bucket, candidates.agreement_path(name, night)),
            )
        )
    report = comparison.compare(production, cand, n_boot=n_boot)
    report = {
        "candidate": name,
        "candidate_model_version": candidate.model_version,
        "candidate_code": candidate.code,  # None: production's sunalgo
        "production_model_versions": sorted(production_versions),
        **report,
    }
    write_json(bucket, candidates.comparison_path(name), report)
    return report


def registered_candidate_assets(bucket: BucketResource) -> list[AssetsDefinition]:
    """The assets of every registered candidate (none when the bucket cannot be listed yet)."""
    if not bucket.is_available():
        return []
    return [a for name in candidates.list_names(bucket) for a in candidate_assets(name, candidates.load(bucket, name))]
