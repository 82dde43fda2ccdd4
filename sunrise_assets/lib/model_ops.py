"""Fitting and promoting sunalgo's model through Dagster.

Fitting is a run of ``stage_model`` on the instance (its history, its metadata in the UI).
Promotion records the choice in the bucket (models/production.json) and reports a materialization of
``production_model`` whose data version is the model version: Dagster then shows gold as stale and
declarative automation re-runs gold and the warehouse, batched like any backfill. Promoting the
version already in production changes nothing and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey, AssetMaterialization, DagsterInstance

from resources.bucket import BucketResource
from sunrise_assets.dagster_internals.names import DATA_VERSION_TAG
from sunrise_assets.domain import model_store

PRODUCTION_MODEL = AssetKey("production_model")
STAGE_MODEL = AssetKey("stage_model")


@dataclass
class FitReport:
    run_id: str
    version: str | None
    error: str | None


def materialize(instance: DagsterInstance, key: AssetKey):
    """One run of a single asset on the instance (its history and metadata in the UI); the result and
    the steps' error messages ('' when it succeeded)."""
    from sunrise_assets.definitions import build_defs
    from sunrise_assets.lib.ingest import step_failures

    job = build_defs().resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return result, "" if result.success else ("; ".join(step_failures(result)) or "the run failed")


def fit_model(instance: DagsterInstance) -> FitReport:
    """One run of stage_model: the model fitted from the warehouse, its version (or the error)."""
    result, error = materialize(instance, STAGE_MODEL)
    if error:
        return FitReport(result.run_id, None, error)
    materialization = result.asset_materializations_for_node("stage_model")[-1]
    return FitReport(result.run_id, str(materialization.metadata["model_version"].value), None)


def materialize_queued(
    instance: DagsterInstance, key: AssetKey, *, trigger: str, daemon=None, on_work=None
) -> tuple[str | None, str | None]:
    """One unpartitioned asset submitted to the instance (queue, limits, launcher, monitoring,
    retries) as a backfill of its own, served by ``daemon`` (the caller's DaemonChild) when none
    serves the instance; waited for. (run id, error). ``on_work`` gets the QueuedWork first (an
    interrupt stops its run)."""
    from sunrise_assets.lib.queued_work import QueuedWork

    work = QueuedWork(instance, [], [], trigger=trigger, daemon=daemon)
    if on_work:
        on_work(work)
    return work.summary([key])


def fit_model_queued(instance: DagsterInstance, daemon=None, on_work=None) -> FitReport:
    """stage_model submitted to the instance and waited for (``materialize_queued``)."""
    from dagster import AssetRecordsFilter

    run_id, error = materialize_queued(instance, STAGE_MODEL, trigger="fit-model", daemon=daemon, on_work=on_work)
    if error or run_id is None:
        return FitReport(run_id or "", None, error or "no run was made")
    record = instance.fetch_materializations(AssetRecordsFilter(asset_key=STAGE_MODEL), limit=1).records[0]
    metadata = record.event_log_entry.asset_materialization.metadata
    return FitReport(record.run_id, str(metadata["model_version"].value), None)


def promote(instance: DagsterInstance, bucket: BucketResource, version: str) -> bool:
    """Make ``version`` production; False (and no observation) when it already is."""
    if not model_store.promote(bucket, version):
        return False
    observe_production(instance, bucket)
    return True


def observe_production(instance: DagsterInstance, bucket: BucketResource) -> str:
    """Report the production model as a (runless) materialization of production_model, the model
    version as its data version: automation sees its dependents' parent updated."""
    version = model_store.production_version(bucket)
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key=PRODUCTION_MODEL,
            tags={DATA_VERSION_TAG: version},
            metadata={"model_version": version, "params": bucket.describe(model_store.params_path(version))},
        )
    )
    return version
