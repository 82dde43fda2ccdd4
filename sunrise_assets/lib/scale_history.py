"""A Dagster instance and a raw bucket that look like N processed nights, built without computing any.

For `sunrise bench-scale`: what Dagster's own costs do as the archive grows is a matter of how many
partitions, runs and events the instance holds, not of what the nights contain. So:

- the raw bucket holds N tiny nights (``synthetic.tiny_raw``) that pair, index and register like
  real ones (raw_index entries and the subject registry written by ``reconcile`` itself);
- the instance holds N night partitions, a raw data version per night (``raw_night`` observations,
  as registration writes them), and the history of runs of ``NIGHTS_PER_RUN`` nights over every
  layer: per night and asset a materialization-planned event and a materialization with the tags
  Dagster sets (code version, data version) and the step's per-night metadata. A share of nights
  (``FAILED_SHARE``) fails in its first run at ``bronze_psg`` (downstream assets planned, never
  materialized; the run FAILURE) and is re-run successfully in a later run of its own, and a smaller
  share (``STILL_FAILED_SHARE``) is never re-run: failed in the UI, as bad nights are.

Events are written in bulk, one run's at a time (``dagster_internals.history_events.store_history_batch``:
the rows Dagster's ``store_event`` writes, through the storage's own row builder and asset-key update,
in one transaction per database): the public ``store_event_batch`` stores them one by one, 62 s per
1,000 nights on SQLite. Runs are recorded with ``add_run`` so every event's run exists with its real
status and tags.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetObservation, DagsterInstance, DagsterRun, DagsterRunStatus

from sunrise_assets.dagster_internals.history_events import (
    materialization_entry,
    planned_entry,
    runless_observation_entry,
    store_history_batch,
)
from sunrise_assets.dagster_internals.names import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    DATA_VERSION_TAG,
)
from sunrise_assets.defs.jobs import LAYERS
from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
from sunrise_assets.domain.anonymise import Pseudonymizer
from sunrise_assets.domain.pairing import scan_bucket
from sunrise_assets.domain.raw_nights import Reconciliation, reconcile
from sunrise_assets.lib.night_registry import RAW_NIGHT
from sunrise_assets.synthetic import tiny_raw

FAILED_SHARE = 0.02  # nights whose first run failed, re-run successfully
STILL_FAILED_SHARE = 0.005  # nights that failed and were never re-run
FAILING_ASSET = AssetKey("bronze_psg")  # where a bad night fails (input validation)
JOB_NAME = "nightly_pipeline"
VALIDATION_JOB = "validation_summary_job"
VALIDATION_SUMMARY = AssetKey("validation_summary")
FIRST_RUN_TS = 1_600_000_000.0
PARTITION_CHUNK = 5000  # partitions added per call


class LocalStore:
    """A local bucket directory without BucketResource's per-object fsync: a benchmark's scratch
    bucket is rebuilt, not recovered, so the build writes 50,000 nights in seconds, not minutes."""

    def __init__(self, root: Path):
        from resources.bucket import BucketResource

        self.root = root
        self._reader = BucketResource(url=str(root))

    def list(self, prefix: str = "", *, start_after: str = ""):
        return self._reader.list(prefix, start_after=start_after)

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def write_bytes(self, path: str, data: bytes):
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return self._reader.info(path)

    def describe(self, path: str) -> str:
        return str(self.root / path)


def write_raw_nights(bucket_root: Path, indices: Iterable[int]) -> int:
    store = LocalStore(bucket_root)
    return sum(len(tiny_raw.write_night(store, k)) for k in indices)


def index_raw_nights(bucket_root: Path, pseudonymizer: Pseudonymizer) -> Reconciliation:
    """Pair and index the bucket's nights (raw_index entries, subject registry), as ingest does."""
    store = LocalStore(bucket_root)
    return reconcile(scan_bucket(store), store, pseudonymizer)


def write_gold_documents(bucket_root: Path, nights: Iterable[str]) -> int:
    """Each night's two gold documents the cross-night validation summary reads (clinical scores of
    both sides, epoch agreement with its confusion matrix), with values drawn from the night's key:
    the summary at scale reads N nights' documents as it would in production."""
    from sunalgo.labels import STAGES
    from sunrise_assets.domain import layout
    from sunrise_assets.domain.layer_files import write_json

    store = LocalStore(bucket_root)
    count = 0
    for night in nights:
        u = _share(night, "gold")
        psg = {
            "total_sleep_time_min": 380.0 + 60 * u,
            "sleep_efficiency_pct": 80.0 + 10 * u,
            "sleep_onset_latency_min": 15.0 + 10 * u,
            "waso_min": 40.0 + 20 * u,
            "ahi": 5.0 + 20 * u,
        }
        sunalgo = {score: value * (0.95 + 0.1 * _share(night, score)) for score, value in psg.items()}
        write_json(store, layout.gold_scores(night), {"psg": psg, "sunalgo": sunalgo, "sunalgo_version": "scale"})
        n = len(STAGES)
        confusion = [[100 if i == j else int(10 * u) for j in range(n)] for i in range(n)]
        write_json(
            store,
            layout.gold_agreement(night),
            {
                "confusion_matrix": confusion,
                "accuracy": 0.7 + 0.2 * u,
                "kappa_5class": 0.5 + 0.2 * u,
                "kappa_4class": 0.55 + 0.2 * u,
                "kappa_sleep_wake": 0.6 + 0.2 * u,
                "sleep_sensitivity": 0.9,
                "wake_specificity": 0.6,
            },
        )
        count += 2
    return count


@dataclass(frozen=True)
class PipelineAsset:
    key: AssetKey
    step_key: str
    code_version: str | None
    fails_with_bad_night: bool  # FAILING_ASSET or downstream of it: a bad night never reaches it


def pipeline_assets(defs) -> list[PipelineAsset]:
    """The per-night assets of the layers in graph order, with their step (op) and code version."""
    graph = defs.resolve_asset_graph()
    from dagster import AssetSelection

    keys = AssetSelection.groups(*LAYERS).resolve(graph)
    failing = AssetSelection.assets(FAILING_ASSET).downstream().resolve(graph)
    order = {k: i for i, k in enumerate(graph.toposorted_asset_keys)}
    out = []
    for key in sorted(keys, key=lambda k: order[k]):
        assets_def = graph.assets_def_for_key(key)
        out.append(PipelineAsset(key, assets_def.node_def.name, graph.get(key).code_version, key in failing))
    return out


@dataclass
class HistoryPlan:
    """Which run materializes which nights; deterministic in the nights' order."""

    nights: list[str]
    runs: list[tuple[list[str], set[str]]] = field(default_factory=list)  # (nights, failed among them)
    failed_then_rerun: set[str] = field(default_factory=set)
    still_failed: set[str] = field(default_factory=set)


def _share(night: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{night}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def plan_history(nights: Sequence[str], batch: int = NIGHTS_PER_RUN) -> HistoryPlan:
    plan = HistoryPlan(list(nights))
    for night in nights:
        u = _share(night, "failed")
        if u < STILL_FAILED_SHARE:
            plan.still_failed.add(night)
        elif u < STILL_FAILED_SHARE + FAILED_SHARE:
            plan.failed_then_rerun.add(night)
    failing = plan.still_failed | plan.failed_then_rerun
    for i in range(0, len(nights), batch):
        chunk = list(nights[i : i + batch])
        plan.runs.append((chunk, {n for n in chunk if n in failing}))
    rerun = [n for n in nights if n in plan.failed_then_rerun]
    for i in range(0, len(rerun), batch):  # re-runs of the failed nights, later, in runs of their own
        plan.runs.append((rerun[i : i + batch], set()))
    return plan


def register_partitions(instance: DagsterInstance, nights: Sequence[str]) -> None:
    existing = set(instance.get_dynamic_partitions(nights_partitions.name))
    todo = [n for n in nights if n not in existing]
    for i in range(0, len(todo), PARTITION_CHUNK):
        instance.add_dynamic_partitions(nights_partitions.name, todo[i : i + PARTITION_CHUNK])


def record_raw_versions(instance: DagsterInstance, reconciliation: Reconciliation, nights: set[str]) -> None:
    """One raw data version per night (``raw_night`` observation), as registration records it, stored
    in bulk (the same events ``report_runless_asset_event`` stores one by one)."""
    entries = [
        runless_observation_entry(
            AssetObservation(
                asset_key=RAW_NIGHT, partition=source.night, tags={DATA_VERSION_TAG: source.content_version}
            ),
            FIRST_RUN_TS - 60.0,
        )
        for source in reconciliation.sources
        if source.night in nights
    ]
    for i in range(0, len(entries), 5000):
        store_history_batch(instance.event_log_storage, entries[i : i + 5000])


def _run_events(
    run_id: str, assets: Sequence[PipelineAsset], nights: Sequence[str], failed: set[str], t0: float
) -> Iterator[list]:
    """Per asset, one batch: planned events (at t0), then the materializations of the nights that
    reached it (a failed night stops at FAILING_ASSET: it and everything downstream are not materialized)."""
    planned = [planned_entry(run_id, JOB_NAME, a.step_key, a.key, night, t0) for a in assets for night in nights]
    for i in range(0, len(planned), 1000):
        yield planned[i : i + 1000]
    for step, asset in enumerate(assets):
        t = t0 + 1.0 + step
        batch = [
            materialization_entry(
                run_id,
                JOB_NAME,
                asset.step_key,
                asset.key,
                night,
                t,
                code_version=asset.code_version,
                data_version=hashlib.sha256(f"{asset.key}:{night}:{run_id}".encode()).hexdigest()[:16],
                metadata={"night_wall_s": 0.05, "night_cpu_s": 0.05},
            )
            for night in nights
            if not (asset.fails_with_bad_night and night in failed)
        ]
        if batch:
            yield batch


def write_history(
    instance: DagsterInstance,
    assets: Sequence[PipelineAsset],
    plan: HistoryPlan,
    *,
    first_ts: float = FIRST_RUN_TS,
    on_run: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Record every run of the plan with its events; returns counts (runs, events)."""
    selection = frozenset(a.key for a in assets)
    runs = events = 0
    storage = instance.event_log_storage
    for i, (nights, failed) in enumerate(plan.runs):
        run_id = str(uuid.uuid4())
        t0 = first_ts + i * 3600.0
        status = DagsterRunStatus.FAILURE if failed else DagsterRunStatus.SUCCESS
        instance.add_run(
            DagsterRun(
                job_name=JOB_NAME,
                run_id=run_id,
                status=status,
                asset_selection=selection,
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: nights[0],
                    ASSET_PARTITION_RANGE_END_TAG: nights[-1],
                    "sunrise/trigger": "scale_history",
                    "sunrise/nights": str(len(nights)),
                },
            )
        )
        batch = [event for part in _run_events(run_id, assets, nights, failed, t0) for event in part]
        store_history_batch(storage, batch)
        events += len(batch)
        runs += 1
        if on_run:
            on_run(len(nights))
    # The cross-night summary, made once after the last run (as ingest does): without it, `sunrise
    # ingest` with nothing to do would make it (a platform upgraded to it).
    run_id = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name=VALIDATION_JOB, run_id=run_id, status=DagsterRunStatus.SUCCESS))
    t = first_ts + len(plan.runs) * 3600.0
    store_history_batch(
        storage,
        [
            planned_entry(run_id, VALIDATION_JOB, "validation_summary", VALIDATION_SUMMARY, None, t),
            materialization_entry(
                run_id,
                VALIDATION_JOB,
                "validation_summary",
                VALIDATION_SUMMARY,
                None,
                t + 1.0,
                code_version=None,
                data_version=run_id[:16],
                metadata={},
            ),
        ],
    )
    return {"runs": runs + 1, "events": events + 2}


def expected_materialized(plan: HistoryPlan, assets: Sequence[PipelineAsset]) -> dict[str, int]:
    """How many nights each asset has materialized, by the plan (the test's independent route)."""
    return {
        a.key.to_user_string(): len(plan.nights) - (len(plan.still_failed) if a.fails_with_bad_night else 0)
        for a in assets
    }


@contextmanager
def unsynced_sqlite() -> Iterator[None]:
    """While building, SQLite connections do not wait for the disk (``PRAGMA synchronous=OFF``):
    Dagster creates one database per run, each table a commit, ~0.2 s a run at two fsyncs a
    commit. A power cut during the build loses the build, which is rebuilt anyway (``built.json``
    is written last). A SQLAlchemy connect listener on every engine, removed afterwards; other
    databases (PostgreSQL) are left as they are."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection, _record) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

    event.listen(Engine, "connect", on_connect)
    try:
        yield
    finally:
        event.remove(Engine, "connect", on_connect)


def build(
    instance: DagsterInstance,
    bucket_root: Path,
    nights_count: int,
    pseudonymizer: Pseudonymizer,
    defs,
    *,
    on_step: Callable[[str, float], None] | None = None,
) -> dict[str, object]:
    """Raw bucket, partitions, raw versions and history of ``nights_count`` nights; timings per step."""
    with unsynced_sqlite():
        return _build(instance, bucket_root, nights_count, pseudonymizer, defs, on_step=on_step)


def _build(
    instance: DagsterInstance,
    bucket_root: Path,
    nights_count: int,
    pseudonymizer: Pseudonymizer,
    defs,
    *,
    on_step: Callable[[str, float], None] | None = None,
) -> dict[str, object]:
    timings: dict[str, float] = {}

    def step(name: str, began: float) -> None:
        timings[name] = round(time.perf_counter() - began, 2)
        if on_step:
            on_step(name, timings[name])

    began = time.perf_counter()
    files = write_raw_nights(bucket_root, range(nights_count))
    step("raw_files", began)
    began = time.perf_counter()
    reconciliation = index_raw_nights(bucket_root, pseudonymizer)
    step("raw_index", began)
    nights = [s.night for s in reconciliation.sources]
    began = time.perf_counter()
    register_partitions(instance, nights)
    record_raw_versions(instance, reconciliation, set(nights))
    step("partitions", began)
    assets = pipeline_assets(defs)
    plan = plan_history(instance.get_dynamic_partitions(nights_partitions.name))
    began = time.perf_counter()
    counts = write_history(instance, assets, plan)
    step("history", began)
    return {
        "nights": len(nights),
        "raw_files": files,
        "runs": counts["runs"],
        "events": counts["events"],
        "failed_then_rerun": len(plan.failed_then_rerun),
        "still_failed": len(plan.still_failed),
        "build_s": timings,
        "expected_materialized": expected_materialized(plan, assets),
    }
