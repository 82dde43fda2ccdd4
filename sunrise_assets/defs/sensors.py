"""The bucket sensor: new and changed nights flow in by themselves, in batched runs.

Each tick lists at most ``max_objects`` raw objects, continuing where the previous tick stopped
(the cursor), so a tick's work is bounded however large the bucket. A sweep is a pass over the
whole raw prefix, possibly spread over several ticks; objects updated since the previous sweep
began mark their patient's folders as touched, and only those folders are paired again. New or
changed nights are registered (partition + raw data version) and requested in runs of many nights
over contiguous partition ranges; the run key is derived from the nights and their content
versions, so a repeated tick never launches a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from resources.bucket import BucketResource
from sunrise_assets.dagster_internals.names import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sunrise_assets.defs.jobs import LAYERS, nightly_pipeline
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
from sunrise_assets.domain.pairing import patient_of, scan_patients
from sunrise_assets.domain.raw_nights import Reconciliation, contiguous_batches, reconcile
from sunrise_assets.lib.night_registry import observations

MAX_OBJECTS_PER_TICK = int(os.environ.get("SUNRISE_SENSOR_MAX_OBJECTS", "20000"))
# Clocks of writers and of this machine differ a little; re-looking at a folder costs little.
UPDATE_MARGIN_S = 120.0


@dataclass
class BucketCursor:
    after: str = ""  # last object path listed in the current sweep ("" = start a new sweep)
    since: float = 0.0  # objects updated at or after this (minus the margin) are news
    sweep_started: float = 0.0  # when the current sweep began

    @classmethod
    def parse(cls, text: str | None) -> BucketCursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass
class TickPlan:
    cursor: BucketCursor
    touched: set[tuple[str, str]]
    listed: int


def plan_tick(bucket: BucketResource, cursor: BucketCursor, *, now: float, max_objects: int) -> TickPlan:
    """List the next slice of the raw prefix and say which patients' folders changed."""
    sweep_started = cursor.sweep_started if cursor.after else now
    threshold = cursor.since - UPDATE_MARGIN_S if cursor.since else float("-inf")
    touched: set[tuple[str, str]] = set()
    listed = 0
    last = cursor.after
    for obj in bucket.list("raw/", start_after=cursor.after):
        listed += 1
        last = obj.path
        if obj.updated >= threshold:
            patient = patient_of(obj.path)
            if patient:
                touched.add(patient)
        if listed >= max_objects:
            return TickPlan(BucketCursor(after=last, since=cursor.since, sweep_started=sweep_started), touched, listed)
    # Reached the end: the sweep is complete; the next one looks for updates since this one began.
    return TickPlan(BucketCursor(after="", since=sweep_started, sweep_started=0.0), touched, listed)


def layer_asset_keys(context: SensorEvaluationContext) -> list[AssetKey] | None:
    """Every asset of the layers, named explicitly in each run: automation then knows these runs
    already target the downstream assets (a run without an explicit selection looks to it as if
    it targeted nothing, and it would launch the same nights again)."""
    repository = getattr(context, "repository_def", None)
    if repository is None:
        return None
    return sorted(AssetSelection.groups(*LAYERS).resolve(repository.asset_graph), key=lambda k: k.to_user_string())


def run_requests(
    reconciliation: Reconciliation,
    ordered_partitions: list[str],
    batch_size: int,
    asset_selection: list[AssetKey] | None = None,
) -> list[RunRequest]:
    versions = {s.night: s.content_version for s in reconciliation.sources}
    known = set(ordered_partitions)  # once: a set per night made a tick quadratic in the archive's nights
    order = list(ordered_partitions) + [n for n in reconciliation.new if n not in known]
    requests = []
    for batch in contiguous_batches(order, set(reconciliation.to_run), batch_size):
        digest = hashlib.sha256("\n".join(f"{n}:{versions[n]}" for n in batch).encode()).hexdigest()[:20]
        requests.append(
            RunRequest(
                run_key=f"nights-{digest}",
                asset_selection=asset_selection,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: batch[0],
                    ASSET_PARTITION_RANGE_END_TAG: batch[-1],
                    "sunrise/trigger": "raw_bucket_sensor",
                    "sunrise/nights": str(len(batch)),
                },
            )
        )
    return requests


def evaluate(
    context: SensorEvaluationContext, bucket: BucketResource, *, max_objects: int = MAX_OBJECTS_PER_TICK
) -> SensorResult | SkipReason:
    cursor = BucketCursor.parse(context.cursor)
    plan = plan_tick(bucket, cursor, now=time.time(), max_objects=max_objects)
    if not plan.touched:
        return SensorResult(
            skip_reason=SkipReason(f"nothing new ({plan.listed} objects listed)"), cursor=plan.cursor.dump()
        )
    scan = scan_patients(bucket, plan.touched)
    reconciliation = reconcile(scan, bucket, Pseudonymizer(load_key()))
    existing = context.instance.get_dynamic_partitions(nights_partitions.name)
    # One set of the registered nights (a set per source night was a ~70-110 s tick at 50,000 nights).
    registered = set(existing)
    added = [s.night for s in reconciliation.sources if s.night not in registered]
    requests = run_requests(reconciliation, existing, NIGHTS_PER_RUN, layer_asset_keys(context))
    context.log.info(
        f"{len(plan.touched)} patient folder(s) changed: {len(reconciliation.new)} new night(s), "
        f"{len(reconciliation.changed)} changed, {len(reconciliation.reuploaded)} re-uploaded unchanged, "
        # Only a count: problem lines name raw paths, which hold patient references.
        f"{len(scan.problems)} unreadable file(s) (see `sunrise scan`); {len(requests)} run(s)"
    )
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(nights_partitions.name, added)] if added else [],
        asset_events=observations(reconciliation),
        cursor=plan.cursor.dump(),
    )


@sensor(
    job=nightly_pipeline,
    minimum_interval_seconds=int(os.environ.get("SUNRISE_SENSOR_INTERVAL_S", "30")),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Watches the raw bucket: registers nights that have both a recording and a PSG study, and runs them bronze "
        "-> warehouse in batches."
    ),
)
def raw_bucket_sensor(context: SensorEvaluationContext, bucket: BucketResource):
    return evaluate(context, bucket)
