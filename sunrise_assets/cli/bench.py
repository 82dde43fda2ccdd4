"""`sunrise bench`: how fast the platform turns N nights into warehouse rows, against the floor.

One invocation, the same N generated nights (cached between calls), five measurements:

1. floor      the assets' own compute functions, called directly (a stub context: no Dagster
              instance, run or event) in a plain loop over chunks of nights, one process per core;
1b. ingest    the user's own ``sunrise ingest`` end to end, as a subprocess on a fresh copy of the
              nights (pairing, registering, its backfill through its dagster-daemon child, the summary);
2. platform   a real Dagster asset backfill of every night on a real (SQLite) instance, executed by
              ``dagster-daemon``: runs of ``NIGHTS_PER_RUN`` nights, as many concurrent runs as cores;
3. naive      one ``dagster job execute`` process per night (the old way), on a subset, extrapolated;
4. incremental the bucket sensor's tick plus one declarative-automation evaluation over every
              materialized night when nothing is new (after a warm-up tick of each).

Plus sunalgo alone (parse, preprocess, features, predict, scores: one core, in memory). Figures:
nights per second, wall and CPU seconds, peak RSS per process, platform/floor, the time share of
each asset (from the ``night_wall_s`` / ``night_cpu_s`` metadata of the materializations), the
machine and its load average. CPU seconds are those of the measured process tree; peak RSS per
process is the kernel's high-water mark (VmHWM) sampled every 0.2 s.

Layout of the work directory::

    DIR/raw-cache/seed-S/    raw nights as generated (night k is the same whatever N), reused
    DIR/runs/<phase>/        a fresh bucket (raw/ = symlinks into the cache), warehouse, DAGSTER_HOME
"""

from __future__ import annotations

import json
import math
import os
import platform as _platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from sunrise_assets import settings

CACHE_VERSION = 1
# The pseudonym key of synthetic benchmark nights (used only when SUNRISE_PSEUDONYM_KEY is unset).
BENCH_KEY = "sunrise-bench-key-synthetic-nights-only"
SAMPLE_INTERVAL_S = 0.2
# Nights per task of the floor's pool: the platform's nights per run, so both write the warehouse in
# the same rhythm (with 10, the two workers' SQLite write transactions collided often and the floor
# kept only ~1.3 of 2 cores busy).
FLOOR_CHUNK = settings.NIGHTS_PER_RUN
TARGETS = {
    "platform_over_floor_200": 1.3,
    "ingest_over_floor_200": 1.3,
    "ingest_2000_nights_s": 12 * 60,
    "wall_2000_nights_s": 15 * 60,
    "incremental_2000_nights_s": 10.0,
    "peak_rss_gib": 1.5,
    "sunalgo_nights_per_s_per_core": 10.0,
}
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# --phases: every phase by default; incremental, sunalgo and candidate run on the platform phase's run.
PHASES = ("floor", "ingest", "platform", "incremental", "sunalgo", "candidate", "naive")
ON_PLATFORM = {"incremental", "sunalgo", "candidate"}


# ----------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    import dagster
    import numpy

    return {
        "hostname": _platform.node(),
        "cpu": cpu or _platform.processor(),
        "cores": cores(),
        "memory_gib": round(mem / 2**30, 1),
        "os": f"{_platform.system()} {_platform.release()}",
        "python": _platform.python_version(),
        "dagster": dagster.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------ /proc sampling


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _proc(pid: int) -> tuple[str, float, int, str] | None:
    """(start time id, CPU seconds, peak RSS bytes, command line) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        hwm = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
                break
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return fields[19], cpu, hwm, cmd
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class ProcStat:
    pid: int
    role: str
    cmd: str
    cpu_start: float
    cpu_last: float
    peak_rss: int


class TreeSampler:
    """Samples the processes under this one (and itself) every ``SAMPLE_INTERVAL_S``: per-process
    peak RSS (VmHWM) and CPU seconds. CPU of a process that ends between two samples is short by
    at most one interval, so the phase's CPU is also read from getrusage and the larger kept."""

    def __init__(self, role_of: Callable[[int, str], str], *, include_self: bool = True):
        self.role_of = role_of
        self.include_self = include_self
        self.procs: dict[tuple[int, str], ProcStat] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._available = Path("/proc/self/stat").exists()

    def __enter__(self) -> TreeSampler:
        self._ru0 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        self.wall0 = time.perf_counter()
        self.load_before = load()
        if self._available:
            self.sample(first=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._available:
            self._thread.join()
            self.sample()
        self.wall = time.perf_counter() - self.wall0
        ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rusage_self_cpu = (ru_self.ru_utime + ru_self.ru_stime) - (self._ru0[0].ru_utime + self._ru0[0].ru_stime)
        self.rusage_children_cpu = (ru_kids.ru_utime + ru_kids.ru_stime) - (
            self._ru0[1].ru_utime + self._ru0[1].ru_stime
        )
        self.load_after = load()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def sample(self, *, first: bool = False) -> None:
        me = os.getpid()
        kids = _children_map()
        todo, seen = [me], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(kids.get(pid, ()))
        for pid in seen:
            info = _proc(pid)
            if info is None:
                continue
            start, cpu, hwm, cmd = info
            key = (pid, start)
            stat = self.procs.get(key)
            if stat is None:
                existed = first  # a process alive when the phase began only counts its CPU since then
                stat = self.procs[key] = ProcStat(
                    pid, "bench" if pid == me else self.role_of(pid, cmd), cmd[:160], cpu if existed else 0.0, cpu, hwm
                )
            stat.cpu_last, stat.peak_rss = cpu, max(stat.peak_rss, hwm)
            if not stat.cmd and cmd and pid != me:  # first seen between fork and exec, or as a zombie
                stat.cmd, stat.role = cmd[:160], self.role_of(pid, cmd)

    def cpu_seconds(self) -> float:
        me = os.getpid()
        sampled = sum(p.cpu_last - p.cpu_start for p in self.procs.values() if self.include_self or p.pid != me)
        rusage = self.rusage_children_cpu + (self.rusage_self_cpu if self.include_self else 0.0)
        return round(max(sampled, rusage), 2)

    def peak_rss(self) -> dict[str, Any]:
        """Peak RSS per role: the largest process of each role, and how many processes it had."""
        roles: dict[str, dict[str, Any]] = {}
        for p in self.procs.values():
            if not self.include_self and p.role == "bench":
                continue
            r = roles.setdefault(p.role, {"processes": 0, "peak_rss_mib": 0.0, "cpu_s": 0.0, "example": p.cmd})
            r["processes"] += 1
            r["peak_rss_mib"] = max(r["peak_rss_mib"], round(p.peak_rss / 2**20, 1))
            r["cpu_s"] = round(r["cpu_s"] + p.cpu_last - p.cpu_start, 2)
        return {"max_mib": max((r["peak_rss_mib"] for r in roles.values()), default=0.0), "by_role": roles}

    def figures(self, nights: int) -> dict[str, Any]:
        return {
            "nights": nights,
            "wall_s": round(self.wall, 2),
            "cpu_s": self.cpu_seconds(),
            "nights_per_s": round(nights / self.wall, 3) if self.wall > 0 else None,
            "cpu_s_per_night": round(self.cpu_seconds() / nights, 4) if nights else None,
            "peak_rss": self.peak_rss(),
            "load_average_before": self.load_before,
            "load_average_after": self.load_after,
        }


def _role(pid: int, cmd: str) -> str:
    if "dagster-daemon" in cmd or "daemon_main" in cmd:
        return "dagster-daemon"
    if "sunrise_assets.cli ingest" in cmd:
        return "sunrise ingest"
    if "api grpc" in cmd or "grpc" in cmd.split(" ")[2:4]:
        return "code server"
    if "execute_run" in cmd or "spawn_main" in cmd or "multiprocessing-fork" in cmd:
        return "run worker"
    if "execute_step" in cmd:
        return "step worker"
    if "job execute" in cmd:
        return "run (dagster job execute)"
    if "watch_orphans" in cmd:
        return "orphan watcher"
    if os.path.basename(cmd.split(" ", 1)[0]) == "pgbouncer":
        return "pgbouncer"
    return "pool worker" if "bench" in cmd else "other"


# --------------------------------------------------------------------------- raw nights cache


@dataclass
class RawCache:
    root: Path  # DIR/raw-cache/seed-S
    seed: int
    paired: dict[int, list[str]] = field(default_factory=dict)  # night index -> bucket-relative files
    unpaired: dict[int, list[str]] = field(default_factory=dict)
    hours: dict[int, float] = field(default_factory=dict)  # night index -> sensor recording hours

    @property
    def bucket(self) -> Path:
        return self.root / "bucket"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @classmethod
    def open(cls, root: Path, seed: int) -> RawCache:
        """The cache of ``seed``; emptied when the generator's code changed since it was written."""
        cache = cls(root, seed)
        if cache.manifest.exists():
            data = json.loads(cache.manifest.read_text())
            if (
                data.get("version") == CACHE_VERSION
                and data.get("seed") == seed
                and data.get("generator") == generator_fingerprint()
            ):
                cache.paired = {int(k): v for k, v in data["paired"].items()}
                cache.unpaired = {int(k): v for k, v in data["unpaired"].items()}
                cache.hours = {int(k): v for k, v in data.get("hours", {}).items()}
            else:
                shutil.rmtree(cache.bucket, ignore_errors=True)
        return cache

    def save(self) -> None:
        data = {
            "version": CACHE_VERSION,
            "seed": self.seed,
            "generator": generator_fingerprint(),
            "nights": len(self.paired),
            "paired": self.paired,
            "unpaired": self.unpaired,
            "hours": self.hours,
        }
        tmp = self.manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.manifest)
        # The marker the issue asks for: how many nights of which seed are cached.
        (self.root / "generated.json").write_text(json.dumps({"nights": len(self.paired), "seed": self.seed}))

    def missing(self, nights: int) -> tuple[list[int], list[int]]:
        from sunrise_assets.synthetic.generate import n_unpaired

        return (
            [k for k in range(nights) if k not in self.paired],
            [j for j in range(n_unpaired(nights)) if j not in self.unpaired],
        )

    def files(self, nights: int) -> list[str]:
        from sunrise_assets.synthetic.generate import n_unpaired

        out = [f for k in range(nights) for f in self.paired[k]]
        return out + [f for j in range(n_unpaired(nights)) for f in self.unpaired[j]]


def generator_fingerprint() -> str:
    """Hash of the code that writes the raw nights: a change invalidates the cache."""
    import hashlib

    h = hashlib.sha256()
    for rel in (
        "sunrise_assets/synthetic/generate.py",
        "sunrise_assets/synthetic/simulator.py",
        "sunalgo/recording.py",
    ):
        h.update((settings.REPO_ROOT / rel).read_bytes())
    return h.hexdigest()[:16]


def _generate_one(args: tuple[str, int, str, int]) -> tuple[str, int, list[str], float]:
    """Write paired night k (or unpaired pair j) exactly as ``generate_bucket`` does."""
    from resources.bucket import BucketResource
    from sunrise_assets.synthetic.generate import GenerationReport, write_paired_night, write_unpaired_files

    root, seed, kind, index = args
    bucket = BucketResource(url=root)
    report = GenerationReport(Path(root), [], [], [], set())
    if kind == "paired":
        night = write_paired_night(bucket, seed, index, report)
        hours = _recording_hours(bucket, night.recording_path)
        return kind, index, list(report.files), hours
    write_unpaired_files(bucket, seed, index, report)
    return kind, index, list(report.files), 0.0


def _recording_hours(bucket, path: str) -> float:
    from sunalgo.recording import parse_recording

    return round(parse_recording(bucket.read_bytes(path)).duration_s / 3600, 3)


def ensure_raw_cache(
    workdir: Path, nights: int, seed: int, *, on_night: Callable[[], None] | None = None
) -> tuple[RawCache, dict]:
    """Generate what the cache lacks (in parallel, one process per core); returns it and a report."""
    import multiprocessing as mp

    cache = RawCache.open(workdir / "raw-cache" / f"seed-{seed}", seed)
    cache.bucket.mkdir(parents=True, exist_ok=True)
    paired, unpaired = cache.missing(nights)
    began = time.perf_counter()
    done_before = nights - len(paired)
    if on_night:
        for _ in range(done_before):
            on_night()
    if paired or unpaired:
        jobs = [(str(cache.bucket), seed, "paired", k) for k in paired] + [
            (str(cache.bucket), seed, "unpaired", j) for j in unpaired
        ]
        with mp.get_context("fork").Pool(cores()) as pool:
            for i, (kind, index, files, hours) in enumerate(pool.imap_unordered(_generate_one, jobs), start=1):
                if kind == "paired":
                    cache.paired[index], cache.hours[index] = files, hours
                    if on_night:
                        on_night()
                else:
                    cache.unpaired[index] = files
                if i % 20 == 0:
                    cache.save()  # an interrupted generation resumes where it stopped
        cache.save()
    hours = [cache.hours[k] for k in range(nights) if k in cache.hours]
    return cache, {
        "cached": not (paired or unpaired),
        "generated_now": len(paired),
        "seconds": round(time.perf_counter() - began, 1),
        "cache": str(cache.root),
        "recording_hours_mean": round(statistics.fmean(hours), 2) if hours else None,
        "raw_bytes": sum((cache.bucket / f).stat().st_size for f in cache.files(nights)),
    }


# --------------------------------------------------------------------------------- run dirs


@dataclass
class RunDir:
    root: Path
    env: dict[str, str]

    @property
    def bucket(self) -> Path:
        return self.root / "bucket"


def make_run_dir(
    workdir: Path, name: str, cache: RawCache, nights: int, *, max_concurrent_runs: int, pg=None
) -> RunDir:
    """A fresh work directory whose bucket's raw/ files are symlinks to the cached nights. With
    ``pg`` (a PostgreSQL cluster) the Dagster instance is deploy/dagster.yaml's (dagster-postgres) and
    the warehouse a PostgreSQL database, both fresh; otherwise the embedded default (SQLite)."""
    root = workdir / "runs" / name
    if root.exists():
        shutil.rmtree(root)
    for rel in cache.files(nights):
        target = root / "bucket" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(cache.bucket / rel, target)
    home = root / "dagster_home"
    home.mkdir(parents=True)
    config = (settings.REPO_ROOT / ("deploy/dagster.yaml" if pg else "dagster.yaml")).read_text()
    config = config.replace("max_concurrent_runs: 2", f"max_concurrent_runs: {max_concurrent_runs}")
    (home / "dagster.yaml").write_text(config)
    env = {
        "SUNRISE_WORKDIR": str(root),
        "SUNRISE_BUCKET": str(root / "bucket"),
        "SUNRISE_WAREHOUSE_URL": f"sqlite:///{root / 'warehouse.sqlite'}",
        "DAGSTER_HOME": str(home),
        "SUNRISE_PSEUDONYM_KEY": os.environ.get("SUNRISE_PSEUDONYM_KEY") or BENCH_KEY,
    }
    if pg is not None:
        env["DAGSTER_EVENT_BATCH_SIZE"] = "200"  # as the Dockerfile sets for the production instance
        env.update(pg.dagster_env(pg.create_database(f"bench_{name}_instance").rsplit("/", 1)[1]))
        env["SUNRISE_WAREHOUSE_URL"] = pg.create_database(f"bench_{name}_warehouse")
    return RunDir(root, env)


def start_postgres():
    """A throwaway PostgreSQL cluster (the tests' helper: initdb + pg_ctl in a temp dir, fsync off)
    with a PgBouncer in front (tests/support/pgbouncer.py), as deploy/ runs Cloud SQL: the Dagster
    instance goes through the pooler, the warehouse straight to the cluster."""
    if str(settings.REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(settings.REPO_ROOT))
    try:
        from tests.support.pgbouncer import PooledPostgres
        from tests.support.postgres import PostgresCluster
    except ImportError as exc:
        raise RuntimeError("--instance postgres needs the repository checkout (tests/support/postgres.py)") from exc
    return PooledPostgres(PostgresCluster(user="sunrise_bench")).start()


def _use(run: RunDir) -> None:
    os.environ.update(run.env)


def _register(run: RunDir, instance=None) -> tuple[list[str], float]:
    """Index the bucket's nights (raw_index) and, with an instance, add them as partitions."""
    from resources.bucket import BucketResource
    from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import reconcile
    from sunrise_assets.lib.night_registry import register

    began = time.perf_counter()
    bucket = BucketResource(url=str(run.bucket))
    reconciliation = reconcile(scan_bucket(bucket), bucket, Pseudonymizer(load_key()))
    if instance is not None:
        register(reconciliation, instance)
    return [s.night for s in reconciliation.sources], time.perf_counter() - began


# ------------------------------------------------------------------------------------ floor


class _StubContext:
    """What ``per_night`` and the asset bodies use of an AssetExecutionContext. Events are dropped;
    check evaluations look up an empty in-memory instance (Dagster bookkeeping is the platform's)."""

    def __init__(self, assets_def, nights: list[str]):
        import logging

        self.assets_def = assets_def
        self.selected_asset_keys = set(assets_def.keys)
        self.selected_asset_check_keys = set(assets_def.check_keys)
        self.partition_keys = nights
        self.log = logging.getLogger("sunrise.bench")

    @property
    def asset_key(self):
        (key,) = self.selected_asset_keys
        return key

    @property
    def instance(self):
        if "instance" not in _FLOOR:
            from dagster import DagsterInstance

            _FLOOR["instance"] = DagsterInstance.ephemeral()
        return _FLOOR["instance"]

    def add_asset_metadata(self, *args, **kwargs) -> None:
        pass

    def log_event(self, *args, **kwargs) -> None:
        pass


_FLOOR: dict[str, Any] = {}


def _floor_init() -> None:
    from resources.bucket import BucketResource
    from resources.sql_warehouse import WarehouseResource

    _FLOOR["resources"] = {
        "bucket": BucketResource(url=settings.bucket_url(), raw_url=settings.raw_bucket_url()),
        "warehouse": WarehouseResource(url=settings.warehouse_url(), password=settings.warehouse_password()),
    }


def _steps():
    """(name, assets definition, compute function, resource names) per asset of the job, in graph order."""
    import inspect

    from dagster import AssetsDefinition

    from sunrise_assets.definitions import ASSETS

    steps = []
    for assets_def in ASSETS:
        # Per-night assets only: the cross-night validation summary is not part of a night's run.
        if (
            not isinstance(assets_def, AssetsDefinition)
            or not assets_def.is_executable
            or assets_def.partitions_def is None
        ):
            continue
        fn = assets_def.op.compute_fn.decorated_fn
        steps.append((assets_def.node_def.name, assets_def, fn, list(inspect.signature(fn).parameters)[1:]))
    return steps


def _floor_chunk(nights: list[str]) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Every asset's own code over a chunk of nights, in graph order, in this process."""
    timing: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    for name, assets_def, fn, params in _steps():
        wall0, cpu0 = time.perf_counter(), time.process_time()
        try:
            for _ in fn(_StubContext(assets_def, nights), **{p: _FLOOR["resources"][p] for p in params}):
                pass
        except Exception as exc:  # noqa: BLE001 - per_night raises once for the chunk's bad nights
            failed[f"{name}:{nights[0]}"] = str(exc)[:500]
        timing[name] = [time.perf_counter() - wall0, time.process_time() - cpu0]
    return timing, failed


def measure_floor(run: RunDir, nights_expected: int, on_nights: Callable[[int], None]) -> dict[str, Any]:
    import multiprocessing as mp

    _use(run)
    n_cores = cores()
    timing: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    nights, register_s = _register(run)  # outside the measure, as for the platform
    with TreeSampler(lambda pid, cmd: "pool worker") as sampler:
        chunk = max(1, min(FLOOR_CHUNK, math.ceil(len(nights) / n_cores)))
        chunks = [nights[i : i + chunk] for i in range(0, len(nights), chunk)]
        with mp.get_context("fork").Pool(n_cores, initializer=_floor_init) as pool:
            for (part, bad), chunk_nights in zip(pool.imap(_floor_chunk, chunks), chunks):
                for name, (w, c) in part.items():
                    t = timing.setdefault(name, [0.0, 0.0])
                    t[0] += w
                    t[1] += c
                failed.update(bad)
                on_nights(len(chunk_nights))
            pool.close()
            pool.join()
    figures = sampler.figures(len(nights))
    figures.update(
        {
            "method": f"each asset's compute function called directly with a stub context (no Dagster instance, "
            f"run or event), chunks of {chunk} nights, multiprocessing Pool of {n_cores}",
            "register_s": round(register_s, 2),
            "processes": n_cores,
            "failed": failed,
            "asset_time_share": _share(
                {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in timing.items()}, figures["cpu_s"]
            ),
        }
    )
    if len(nights) != nights_expected:
        figures["warning"] = f"{len(nights)} nights paired, {nights_expected} generated"
    return figures


def _share(per_step: Mapping[str, Mapping[str, float]], total_cpu: float) -> dict[str, Any]:
    """Per step: wall and CPU seconds, share of the asset code's wall time, and of the phase's CPU."""
    wall_sum = sum(v["wall_s"] for v in per_step.values()) or 1.0
    out = {
        name: {
            "wall_s": round(v["wall_s"], 3),
            "cpu_s": round(v["cpu_s"], 3),
            "wall_share_pct": round(100 * v["wall_s"] / wall_sum, 1),
            "cpu_share_of_phase_pct": round(100 * v["cpu_s"] / total_cpu, 1) if total_cpu else None,
        }
        for name, v in per_step.items()
    }
    inside = sum(v["cpu_s"] for v in per_step.values())
    out["(outside asset code)"] = {
        "wall_s": None,
        "cpu_s": round(total_cpu - inside, 2),
        "wall_share_pct": None,
        "cpu_share_of_phase_pct": round(100 * (total_cpu - inside) / total_cpu, 1) if total_cpu else None,
    }
    return out


# --------------------------------------------------------------------------------- platform


def _stop_sensors_and_asset_graph(instance):
    """Stop the code location's sensors on this instance (the backfill is measured alone; the
    incremental pass is measured separately) and return the workspace's asset graph."""
    from sunrise_assets.dagster_internals.daemon import WorkspaceFileTarget, WorkspaceProcessContext

    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(settings.REPO_ROOT / "workspace.yaml")])) as wpc:
        request = wpc.create_request_context()
        for entry in request.get_code_location_entries().values():
            if entry.code_location is None:
                raise RuntimeError(f"code location {entry.origin.location_name} failed to load: {entry.load_error}")
            for repo in entry.code_location.get_repositories().values():
                for sensor in repo.get_sensors():
                    instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
        return request.asset_graph


def _job_asset_keys():
    from dagster import AssetSelection

    from sunrise_assets.definitions import build_defs
    from sunrise_assets.defs.jobs import LAYERS

    return sorted(
        AssetSelection.groups(*LAYERS).resolve(build_defs().resolve_asset_graph()), key=lambda k: k.to_user_string()
    )


def _start_daemon(run: RunDir) -> subprocess.Popen:
    log = open(run.root / "daemon.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(settings.REPO_ROOT / "workspace.yaml")],
        env={**os.environ, **run.env},
        cwd=settings.REPO_ROOT,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Stop a process group this benchmark started (and only that one)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    except ProcessLookupError:
        pass


def _range_size(tags: Mapping[str, str], index: Mapping[str, int]) -> int:
    from sunrise_assets.dagster_internals.names import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
        PARTITION_NAME_TAG,
    )

    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return index[tags[ASSET_PARTITION_RANGE_END_TAG]] - index[tags[ASSET_PARTITION_RANGE_START_TAG]] + 1
    return 1 if PARTITION_NAME_TAG in tags else 0


def measure_platform(
    run: RunDir, n_cores: int, on_nights: Callable[[int], None], *, timeout_s: float
) -> dict[str, Any]:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from sunrise_assets.dagster_internals.daemon import BulkActionStatus
    from sunrise_assets.dagster_internals.names import BACKFILL_ID_TAG
    from sunrise_assets.defs.partitions import NIGHTS_PER_RUN, nights_partitions
    from sunrise_assets.lib.queued_work import submit_backfill

    _use(run)
    with DagsterInstance.get() as instance:
        nights, register_s = _register(run, instance)
        asset_graph = _stop_sensors_and_asset_graph(instance)
        backfill_id = submit_backfill(
            instance,
            nights,
            _job_asset_keys(),
            title=f"sunrise bench: {len(nights)} nights",
            trigger="bench",
            asset_graph=asset_graph,
        )
        order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(nights_partitions.name))}
        terminal = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        counted: set[str] = set()
        daemon = None
        status = None
        try:
            with TreeSampler(_role, include_self=False) as sampler:
                started = time.time()
                daemon = _start_daemon(run)
                while True:
                    time.sleep(1.0)
                    records = instance.get_run_records(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
                    for r in records:
                        if r.dagster_run.status in terminal and r.dagster_run.run_id not in counted:
                            counted.add(r.dagster_run.run_id)
                            on_nights(_range_size(r.dagster_run.tags, order))
                    status = instance.get_backfill(backfill_id).status
                    finished = all(r.dagster_run.status in terminal for r in records)
                    # Every night's run is over (the daemon marks the backfill complete up to 30 s later).
                    if finished and (
                        status != BulkActionStatus.REQUESTED
                        or sum(_range_size(r.dagster_run.tags, order) for r in records) >= len(nights)
                    ):
                        break
                    if daemon.poll() is not None:
                        raise RuntimeError(
                            f"dagster-daemon exited ({daemon.returncode}); see {run.root / 'daemon.log'}"
                        )
                    if time.time() - started > timeout_s:
                        status = "TIMEOUT"
                        break
                completed = time.time()
                _stop(daemon)
        finally:
            if daemon is not None:
                _stop(daemon)
        records = instance.get_run_records(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        starts = [r.start_time for r in records if r.start_time]
        ends = [r.end_time for r in records if r.end_time]
        sizes = [_range_size(r.dagster_run.tags, order) for r in records]
        durations = [r.end_time - r.start_time for r in records if r.end_time and r.start_time]
        last_end = max(ends) if ends else completed
        figures = sampler.figures(len(nights))
        wall = last_end - started
        figures.update(
            {
                "method": (
                    f"asset backfill (PartitionBackfill) of every night, {type(instance.event_log_storage).__name__}, "
                    f"executed by dagster-daemon: QueuedRunCoordinator max_concurrent_runs={n_cores}, "
                    f"DefaultRunLauncher (a process per run), BackfillPolicy.multi_run({NIGHTS_PER_RUN}), "
                    "in-process executor; sensors stopped. wall_s = daemon start -> last run end"
                ),
                "wall_s": round(wall, 2),
                "nights_per_s": round(len(nights) / wall, 3) if wall > 0 else None,
                "first_run_start_s": round(min(starts) - started, 2) if starts else None,
                "runs_span_s": round(last_end - min(starts), 2) if starts else None,
                "all_runs_over_s": round(completed - started, 2),
                "backfill_status": str(getattr(status, "value", status)),
                "register_s": round(register_s, 2),
                "runs": len(records),
                "runs_failed": sum(r.dagster_run.status != DagsterRunStatus.SUCCESS for r in records),
                "nights_per_run": {"min": min(sizes, default=0), "max": max(sizes, default=0)},
                "run_wall_s_median": round(statistics.median(durations), 2) if durations else None,
                "concurrent_runs": n_cores,
            }
        )
        figures["asset_time_share"], figures["nights_materialized"] = asset_time_share(instance, figures["cpu_s"])
        figures["metadata_read_s"] = figures["asset_time_share"].pop("(read_s)")
    return figures


def measure_ingest(run: RunDir, on_nights: Callable[[int], None], *, timeout_s: float) -> dict[str, Any]:
    """The user's own `sunrise ingest`, end to end, as a subprocess on a fresh copy of the nights:
    pairing and registering them, the backfill (its daemon child, its run processes), the cross-night
    summary, the report. Wall and CPU of the whole process tree; nights counted from its instance."""
    from dagster import DagsterInstance, DagsterRunStatus

    from sunrise_assets.lib.ingest import FINAL_ASSETS

    env = {**os.environ, **run.env, "CI": "true"}
    log_path = run.root / "ingest.log"
    with TreeSampler(_role, include_self=False) as sampler, log_path.open("ab") as log:
        started_at = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "sunrise_assets.cli", "ingest", "--workdir", str(run.root)],
            env=env,
            cwd=settings.REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            returncode = "TIMEOUT"
        ended_at = time.time()
    _use(run)
    with DagsterInstance.get() as instance:
        done = set.intersection(*(set(instance.get_materialized_partitions(k)) for k in FINAL_ASSETS))
        records = instance.get_run_records()
        nights = len(instance.get_dynamic_partitions("nights"))
        backfills = instance.get_backfills()
    on_nights(len(done))
    figures = sampler.figures(nights)
    figures.update(
        {
            "method": (
                "`sunrise ingest --workdir DIR` as a subprocess (embedded default: asset backfill, dagster-daemon "
                "child, a local process per run, then the validation summary); wall_s = command start -> exit"
            ),
            "returncode": returncode,
            "nights_materialized": len(done),
            "runs": len(records),
            "runs_failed": sum(r.dagster_run.status != DagsterRunStatus.SUCCESS for r in records),
            "timeline_s": ingest_timeline(started_at, ended_at, backfills, records),
            "log": str(log_path),
        }
    )
    return figures


def ingest_timeline(started_at: float, ended_at: float, backfills: list, records: list) -> dict[str, Any]:
    """Where the command's wall time went, in seconds from its start: each backfill's submission
    and each run's creation, start and end (from the instance), and the command's exit."""

    def since(timestamp: float | None) -> float | None:
        return None if timestamp is None else round(timestamp - started_at, 2)

    runs = sorted(records, key=lambda r: r.create_timestamp.timestamp())
    return {
        "backfills_submitted": [
            since(b.backfill_timestamp) for b in sorted(backfills, key=lambda b: b.backfill_timestamp)
        ],
        "runs": [
            {
                "created": since(r.create_timestamp.timestamp()),
                "started": since(r.start_time),
                "ended": since(r.end_time),
                "backfill": r.dagster_run.tags.get("dagster/backfill"),
            }
            for r in runs
        ],
        "exited": since(ended_at),
    }


def asset_time_share(instance, total_cpu: float) -> tuple[dict[str, Any], int]:
    """Sum the night_wall_s / night_cpu_s metadata of every materialization, per step (one key each)."""
    from dagster import AssetRecordsFilter

    began = time.perf_counter()
    per_step: dict[str, dict[str, float]] = {}
    nights_done = 0
    for name, assets_def, _fn, _params in _steps():
        key = sorted(assets_def.keys, key=lambda k: k.to_user_string())[0]
        wall = cpu = 0.0
        seen = set()
        cursor = None
        while True:
            result = instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor)
            for record in result.records:
                mat = record.asset_materialization
                if mat is None or mat.partition in seen:
                    continue
                seen.add(mat.partition)
                meta = mat.metadata
                wall += float(getattr(meta.get("night_wall_s"), "value", 0.0) or 0.0)
                cpu += float(getattr(meta.get("night_cpu_s"), "value", 0.0) or 0.0)
            if not result.has_more:
                break
            cursor = result.cursor
        per_step[name] = {"wall_s": wall, "cpu_s": cpu}
        nights_done = len(seen) if name == "night_scores" else nights_done
    share = _share(per_step, total_cpu)
    share["(read_s)"] = round(time.perf_counter() - began, 2)
    return share, nights_done


# ------------------------------------------------------------------------------------ naive


def measure_naive(run: RunDir, n_cores: int, on_nights: Callable[[int], None]) -> dict[str, Any]:
    from dagster import DagsterInstance

    _use(run)
    with DagsterInstance.get() as instance:
        nights, register_s = _register(run, instance)
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "execute",
        "-m",
        "sunrise_assets.definitions",
        "-j",
        "nightly_pipeline",
        "--tags",
    ]
    failed = 0
    with TreeSampler(_role, include_self=False) as sampler:
        pending = list(nights)
        running: list[subprocess.Popen] = []
        while pending or running:
            while pending and len(running) < n_cores:
                night = pending.pop(0)
                running.append(
                    subprocess.Popen(
                        [*cmd, json.dumps({"dagster/partition": night})],
                        env={**os.environ, **run.env},
                        cwd=settings.REPO_ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            time.sleep(0.1)
            for p in [p for p in running if p.poll() is not None]:
                running.remove(p)
                failed += p.returncode != 0
                on_nights(1)
    figures = sampler.figures(len(nights))
    figures.update(
        {
            "method": (
                f"one `dagster job execute` process per night (partition tag), {n_cores} at a time, same instance"
            ),
            "register_s": round(register_s, 2),
            "runs_failed": failed,
            "extrapolated": True,
        }
    )
    return figures


# ------------------------------------------------------------------------------ incremental


def measure_incremental(run: RunDir) -> dict[str, Any]:
    """A bucket-sensor tick and an automation evaluation with nothing new, after a warm-up of each.

    The automation evaluation is the one the daemon's automation sensor runs each tick
    (``AutomationTickEvaluationContext.evaluate``, its cursor round-tripped through serialization as
    the daemon stores it). ``dagster.evaluate_automation_conditions``, the public test helper, is
    timed once too: it serializes its cursor against the instance without the daemon's partition
    cache, so it is slower than a real tick."""
    import logging

    from dagster import (
        AssetSelection,
        DagsterInstance,
        SensorResult,
        build_sensor_context,
        evaluate_automation_conditions,
    )

    from resources.bucket import BucketResource
    from sunrise_assets.dagster_internals.daemon import AssetDaemonCursor, evaluate_automation_tick
    from sunrise_assets.definitions import build_defs
    from sunrise_assets.defs import sensors
    from sunrise_assets.defs.jobs import LAYERS

    _use(run)
    bucket = BucketResource(url=str(run.bucket))
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    selection = AssetSelection.groups(*LAYERS)
    logger = logging.getLogger("sunrise.bench.automation")

    def tick(instance, cursor):
        ctx = build_sensor_context(instance=instance, cursor=cursor)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        result = sensors.evaluate(ctx, bucket)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        requests = len(result.run_requests or []) if isinstance(result, SensorResult) else 0
        skip = getattr(result, "skip_reason", None)
        return result.cursor, {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "runs_requested": requests,
            "skip_reason": getattr(skip, "skip_message", skip),
        }

    def evaluate(instance, cursor: AssetDaemonCursor):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        requests, new_cursor, evaluations = evaluate_automation_tick(instance, graph, selection, cursor, logger)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return new_cursor, {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "runs_requested": len(requests),
            "entities": len(evaluations),
        }

    with DagsterInstance.get() as instance:
        cursor, cold_tick = tick(instance, None)
        auto_cursor, cold_auto = evaluate(instance, AssetDaemonCursor.empty())
        load_before = load()
        ticks, autos = [], []
        for _ in range(3):  # repeated: the figure is the median; each repetition is reported
            cursor, t = tick(instance, cursor)
            auto_cursor, a = evaluate(instance, auto_cursor)
            ticks.append(t)
            autos.append(a)
        wall0 = time.perf_counter()
        helper = evaluate_automation_conditions(defs, instance, asset_selection=selection)
        helper = evaluate_automation_conditions(defs, instance, asset_selection=selection, cursor=helper.cursor)
        helper_s = (time.perf_counter() - wall0) / 2
        from sunrise_assets.defs.partitions import nights_partitions

        n = len(instance.get_dynamic_partitions(nights_partitions.name))
    tick_s = statistics.median(t["wall_s"] for t in ticks)
    auto_s = statistics.median(a["wall_s"] for a in autos)
    return {
        "method": "sunrise_assets.defs.sensors.evaluate(build_sensor_context(instance, previous cursor), bucket) + the "
        "automation sensor's evaluation (AutomationTickEvaluationContext.evaluate, previous cursor) on the "
        "platform's instance after the backfill; median of 3 after a warm-up of each",
        "nights": n,
        "sensor_tick_s": tick_s,
        "automation_s": auto_s,
        "total_s": round(tick_s + auto_s, 3),
        "runs_requested": sum(t["runs_requested"] for t in ticks) + sum(a["runs_requested"] for a in autos),
        "ticks": ticks,
        "automation": autos,
        "warm_up": {"sensor_tick": cold_tick, "automation": cold_auto},
        "evaluate_automation_conditions_helper_s": round(helper_s, 3),
        "load_average_before": load_before,
        "load_average_after": load(),
    }


def instance_nights(run: RunDir) -> list[str]:
    from dagster import DagsterInstance

    from sunrise_assets.defs.partitions import nights_partitions

    _use(run)
    with DagsterInstance.get() as instance:
        return list(instance.get_dynamic_partitions(nights_partitions.name))


# ------------------------------------------------------------------------------------ sunalgo


def measure_sunalgo(run: RunDir, nights: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    """sunalgo alone on anonymised recordings held in memory: one core, CPU seconds per night."""
    from resources.bucket import BucketResource
    from sunalgo import features, model, preprocess, scores
    from sunalgo.recording import parse_recording
    from sunrise_assets.domain import layout
    from sunrise_assets.domain.manifest import NightManifest

    bucket = BucketResource(url=str(run.bucket))
    data = [
        (
            bucket.read_bytes(layout.bronze_recording(n)),
            NightManifest.model_validate_json(bucket.read_bytes(layout.bronze_manifest(n))),
        )
        for n in nights
    ]
    stage_model = model.load_model()
    hours = 0.0
    runs = []
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for raw, manifest in data:
            recording = parse_recording(raw)
            signals = preprocess.preprocess(recording, manifest.grid_start_offset_s, manifest.psg.n_epochs)
            x = features.epoch_features(signals)
            pred = model.predict(x, stage_model)
            scores.clinical_scores(
                pred.stage, respiratory_events=float(pred.estimated_events), effort_epochs=pred.resp_event
            )
            hours += recording.duration_s / 3600 / repeats
        runs.append((time.perf_counter() - wall0, time.process_time() - cpu0))
    cpu = statistics.median(c for _, c in runs)
    wall = statistics.median(w for w, _ in runs)
    return {
        "method": "parse_recording + preprocess + epoch_features + predict + clinical_scores, bronze bytes in "
        f"memory, one process; median of {repeats}",
        "nights": len(data),
        "recording_hours_mean": round(hours / max(len(data), 1), 2),
        "cpu_s_per_night": round(cpu / max(len(data), 1), 4),
        "wall_s_per_night": round(wall / max(len(data), 1), 4),
        "nights_per_s_per_core": round(len(data) / cpu, 2) if cpu else None,
        "eight_hour_nights_per_s_per_core": round(hours / 8 / cpu, 2) if cpu else None,
        "repeats_cpu_s": [round(c, 3) for _, c in runs],
        "load_average": load(),
    }


# ------------------------------------------------------------------------------------ report


def _ingest_target(result: Mapping[str, Any]) -> dict[str, Any]:
    n, ratios = result["nights"], result["ingest_over_floor"]
    count = len(ratios["pairs"])
    return {
        "target": "sunrise ingest / floor (wall) on 200 nights",
        "goal": "<= 1.3",
        "measured": ratios["median_wall"],
        "met": (ratios["median_wall"] or 99) <= 1.3 and ratios["all_exited_0"],
        "extrapolated": n != 200,
        "note": ("" if n == 200 else f"measured on {n} nights; ")
        + (f"median of {count} pairs measured in turn: " + ", ".join(str(p["ratio_wall"]) for p in ratios["pairs"]))
        + f"; the whole command {result['ingest']['wall_s']} s in the median pair",
    }


def ingest_2000_target(result: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 14's second target: raw bucket to warehouse through the user's own command, every night done."""
    n, ingest = result["nights"], result["ingest"]
    wall_2000 = round(ingest["wall_s"] * 2000 / n, 1)
    complete = ingest["returncode"] == 0 and ingest.get("nights_materialized") == n
    return {
        "target": "2,000 nights through sunrise ingest",
        "goal": "<= 720 s",
        "measured": wall_2000,
        "met": complete and wall_2000 <= 720,
        "extrapolated": n < 2000,
        "note": (f"linear extrapolation x{2000 / n:.1f} from {n} nights; " if n < 2000 else "")
        + f"{ingest.get('nights_materialized')} of {n} nights materialized, exit {ingest['returncode']}",
    }


def _targets(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    n = result["nights"]
    floor, plat, inc, algo = result["floor"], result["platform"], result["incremental"], result["sunalgo"]
    ratio = result["ratios"]["platform_over_floor_wall"]
    peak = max(floor["peak_rss"]["max_mib"], plat["peak_rss"]["max_mib"]) / 1024
    # Raw bucket -> warehouse: pairing and registering the nights, then the backfill.
    wall_2000 = (plat["wall_s"] + plat.get("register_s", 0.0)) * 2000 / n if n else None
    inc_2000 = inc["total_s"] * (2000 / n if n < 2000 else 1.0)
    rows = [
        (
            "platform / floor (wall) on 200 nights",
            "<= 1.3",
            ratio,
            ratio is not None and ratio <= 1.3,
            n != 200,
            ("" if n == 200 else f"measured on {n} nights; ")
            + f"CPU ratio {result['ratios']['platform_over_floor_cpu']}",
        ),
        (
            "2,000 nights raw -> warehouse",
            "<= 900 s",
            round(wall_2000, 1) if wall_2000 else None,
            wall_2000 is not None and wall_2000 <= 900,
            n < 2000,
            ("" if n >= 2000 else f"linear extrapolation x{2000 / n:.1f} from {n} nights; ")
            + f"registering the nights {plat.get('register_s', 0.0)} s + backfill {plat['wall_s']} s",
        ),
        (
            "incremental pass, nothing new, 2,000 nights",
            "<= 10 s",
            round(inc_2000, 2),
            inc_2000 <= 10,
            n < 2000,
            ""
            if n >= 2000
            else f"linear extrapolation x{2000 / n:.1f} from {n} nights (pessimistic: part is fixed cost)",
        ),
        (
            "peak RSS per process",
            "<= 1.5 GiB",
            round(peak, 3),
            peak <= 1.5,
            False,
            "largest process of floor and platform",
        ),
        (
            "sunalgo alone",
            ">= 10 eight-hour nights/s/core",
            algo["eight_hour_nights_per_s_per_core"],
            (algo["eight_hour_nights_per_s_per_core"] or 0) >= 10,
            False,
            f"{algo['nights_per_s_per_core']} nights/s/core of {algo['recording_hours_mean']} h",
        ),
    ]
    targets = [
        {"target": t, "goal": g, "measured": m, "met": bool(ok), "extrapolated": ex, "note": note}
        for t, g, m, ok, ex, note in rows
    ]
    # After the platform's two: ingest against the floor, then ingest's 2,000 nights.
    targets[2:2] = [_ingest_target(result), ingest_2000_target(result)]
    return targets


def check_phases(phases: Sequence[str]) -> None:
    if unknown := set(phases) - set(PHASES):
        raise ValueError(f"unknown phases {sorted(unknown)}: choose among {', '.join(PHASES)}")
    if ON_PLATFORM & set(phases) and "platform" not in phases:
        raise ValueError(f"phases {sorted(ON_PLATFORM & set(phases))} run on the platform phase's run: add platform")


def run_bench(
    nights: int,
    workdir: Path,
    *,
    seed: int = 7,
    naive_nights: int = 10,
    keep: bool = False,
    timeout_s: float = 4 * 3600,
    progress=None,
    command: str = "",
    instance: str = "sqlite",
    phases: Sequence[str] = PHASES,
    pairs: int = 1,
) -> dict[str, Any]:
    check_phases(phases)
    workdir = workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    n_cores = cores()
    saved_env = {
        k: os.environ.get(k)
        for k in (
            "SUNRISE_WORKDIR",
            "SUNRISE_BUCKET",
            "SUNRISE_WAREHOUSE_URL",
            "DAGSTER_HOME",
            "SUNRISE_PSEUDONYM_KEY",
            "DAGSTER_PG_HOST",
            "DAGSTER_PG_PORT",
            "DAGSTER_PG_USER",
            "DAGSTER_PG_PASSWORD",
            "DAGSTER_PG_DB",
        )
    }

    def task(description: str, total: int):
        if progress is None:
            return lambda n=1: None
        tid = progress.add_task(description, total=total)
        return lambda n=1: progress.advance(tid, n)

    result: dict[str, Any] = {
        "command": command,
        "machine": machine_info(),
        "nights": nights,
        "seed": seed,
        "workdir": str(workdir),
        "instance": instance,
        "phases": [p for p in PHASES if p in phases],
    }
    if instance not in ("sqlite", "postgres"):
        raise ValueError(f"--instance must be sqlite or postgres, not {instance!r}")
    pg = start_postgres() if instance == "postgres" else None
    if pg is not None:
        result["instance"] = (
            "postgres: deploy/dagster.yaml (dagster-postgres) through PgBouncer and a PostgreSQL warehouse on a "
            "throwaway local cluster (fsync off, as in the tests)"
        )
    try:
        cache, result["generation"] = ensure_raw_cache(
            workdir, nights, seed, on_night=task("generating nights (cached)", nights)
        )

        measured_pairs = []
        for i in range(pairs if {"floor", "ingest"} <= set(phases) else 1):
            of = f" ({i + 1}/{pairs})" if pairs > 1 else ""
            if "floor" in phases:
                floor_run = make_run_dir(workdir, "floor", cache, nights, max_concurrent_runs=n_cores, pg=pg)
                result["floor"] = measure_floor(floor_run, nights, task(f"floor (no Dagster){of}", nights))
                if not keep:
                    shutil.rmtree(floor_run.root)  # the derived layers of N nights take ~17 MB each

            if "ingest" in phases:
                ingest_run = make_run_dir(workdir, "ingest", cache, nights, max_concurrent_runs=n_cores, pg=pg)
                result["ingest"] = measure_ingest(
                    ingest_run, task(f"ingest (sunrise ingest){of}", nights), timeout_s=timeout_s
                )
                if not keep:
                    shutil.rmtree(ingest_run.root)
            if {"floor", "ingest"} <= result.keys():
                measured_pairs.append((result["floor"], result["ingest"]))
        if measured_pairs:
            result["floor"], result["ingest"], result["ingest_over_floor"] = ingest_over_floor(measured_pairs)

        if "platform" in phases:
            plat_run = make_run_dir(workdir, "platform", cache, nights, max_concurrent_runs=n_cores, pg=pg)
            result["platform"] = measure_platform(
                plat_run, n_cores, task("platform (Dagster backfill)", nights), timeout_s=timeout_s
            )

        if "incremental" in phases:
            advance = task("incremental pass", 1)
            result["incremental"] = measure_incremental(plat_run)
            advance()

        if "sunalgo" in phases:
            algo_nights = instance_nights(plat_run)[: min(nights, 20)]
            advance = task("sunalgo alone", 1)
            result["sunalgo"] = measure_sunalgo(plat_run, algo_nights)
            advance()

        if "candidate" in phases:  # cli/bench_candidate.py: on the platform run's bronze, silver and gold
            from sunrise_assets.cli.bench_candidate import measure_candidate

            result["candidate"] = measure_candidate(
                plat_run.root,
                plat_run.env,
                lambda: TreeSampler(_role, include_self=False),
                task("candidate (run + compare)", nights),
                timeout_s=timeout_s,
            )

        if "naive" in phases:
            k = max(1, min(naive_nights, nights))
            naive_run = make_run_dir(workdir, "naive", cache, k, max_concurrent_runs=n_cores, pg=pg)
            naive = measure_naive(naive_run, n_cores, task(f"naive (one run per night, {k} nights)", k))
            naive["extrapolated_wall_s_for_all_nights"] = (
                round(naive["wall_s"] * nights / naive["nights"], 1) if naive["nights"] else None
            )
            naive["extrapolated_cpu_s_for_all_nights"] = (
                round(naive["cpu_s"] * nights / naive["nights"], 1) if naive["nights"] else None
            )
            result["naive"] = naive
            if not keep:
                shutil.rmtree(naive_run.root)
        if "platform" in phases:
            if not keep:
                shutil.rmtree(plat_run.root)
            else:
                result["platform"]["kept"] = str(plat_run.root)
    finally:
        if pg is not None:
            pg.stop()
        for k_, v in saved_env.items():
            if v is None:
                os.environ.pop(k_, None)
            else:
                os.environ[k_] = v

    result["ratios"], result["targets"] = {}, []
    if {"floor", "ingest", "platform", "naive", "incremental", "sunalgo"} <= result.keys():
        _ratios_and_targets(result)
    else:
        if "ingest_over_floor" in result:
            result["targets"].append(_ingest_target(result))
        if "ingest" in result:
            result["targets"].append(ingest_2000_target(result))
    if "candidate" in result:
        from sunrise_assets.cli.bench_candidate import candidate_target

        result["targets"].append(candidate_target(result["candidate"]))
    result["machine"]["load_average_at_end"] = load()
    return result


def ingest_over_floor(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict, dict, dict[str, Any]]:
    """The floor and `sunrise ingest` measured one after the other, ``pairs`` times: each pair's wall
    ratio (the host's speed drifts by more than 10 % over minutes on a shared VM, so a ratio of
    two phases measured apart says little alone) and their median; returns the median pair's floor
    and ingest figures and the ratios."""
    ratios = [round(i["wall_s"] / f["wall_s"], 3) if f["wall_s"] else None for f, i in pairs]
    ranked = sorted(range(len(pairs)), key=lambda k: ratios[k] if ratios[k] is not None else math.inf)
    middle = ranked[(len(ranked) - 1) // 2]  # the lower median of an even count: a measured pair
    summary = {
        "pairs": [
            {
                "floor_wall_s": f["wall_s"],
                "floor_cpu_s": f["cpu_s"],
                "ingest_wall_s": i["wall_s"],
                "ingest_cpu_s": i["cpu_s"],
                "ingest_returncode": i["returncode"],
                "ingest_nights_materialized": i["nights_materialized"],
                "ratio_wall": r,
                "first_night_run_started_s": min(
                    (run["started"] for run in i["timeline_s"]["runs"] if run["started"] is not None), default=None
                ),
            }
            for (f, i), r in zip(pairs, ratios, strict=True)
        ],
        "median_wall": statistics.median([r for r in ratios if r is not None]) if any(ratios) else None,
        "median_pair": middle + 1,
        "all_exited_0": all(i["returncode"] == 0 for _, i in pairs),
    }
    return pairs[middle][0], pairs[middle][1], summary


def _ratios_and_targets(result: dict[str, Any]) -> None:
    floor, plat = result["floor"], result["platform"]
    result["ratios"] = {
        "ingest_over_floor_wall": result["ingest_over_floor"]["median_wall"],
        "ingest_over_floor_cpu": round(result["ingest"]["cpu_s"] / floor["cpu_s"], 3) if floor["cpu_s"] else None,
        "platform_over_floor_wall": round(plat["wall_s"] / floor["wall_s"], 3) if floor["wall_s"] else None,
        "platform_over_floor_cpu": round(plat["cpu_s"] / floor["cpu_s"], 3) if floor["cpu_s"] else None,
        "platform_runs_span_over_floor_wall": round(plat["runs_span_s"] / floor["wall_s"], 3)
        if floor["wall_s"] and plat.get("runs_span_s")
        else None,
        "naive_over_platform_wall": round(result["naive"]["extrapolated_wall_s_for_all_nights"] / plat["wall_s"], 2)
        if plat["wall_s"]
        else None,
    }
    result["targets"] = _targets(result)


def print_report(result: Mapping[str, Any], console) -> None:
    from rich.table import Table

    m = result["machine"]
    console.print(
        f"[bold]sunrise bench[/] {result['nights']} nights (seed {result['seed']}, "
        f"{result['generation']['recording_hours_mean']} h recordings) on {m['hostname']}: {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, Dagster {m['dagster']}; "
        f"instance {result['instance']}; "
        f"load average {m['load_average_at_start']} at start, {m['load_average_at_end']} at end"
    )
    table = Table(title="throughput")
    for col in (
        "phase",
        "nights",
        "wall s",
        "CPU s",
        "nights/s",
        "CPU s/night",
        "peak RSS MiB (largest process)",
        "load before -> after",
    ):
        table.add_column(col, justify="right" if col != "phase" else "left")
    for name in ("floor", "ingest", "platform", "naive", "candidate"):
        if name not in result:  # not among --phases
            continue
        p = result[name]
        label = name + (" (extrapolated from these)" if p.get("extrapolated") else "")
        table.add_row(
            label,
            str(p["nights"]),
            f"{p['wall_s']:.1f}",
            f"{p['cpu_s']:.1f}",
            f"{p['nights_per_s']:.2f}",
            f"{p['cpu_s_per_night']:.3f}",
            f"{p['peak_rss']['max_mib']:.0f}",
            f"{p['load_average_before'][0]} -> {p['load_average_after'][0]}",
        )
    console.print(table)
    if "candidate" in result:
        from sunrise_assets.cli.bench_candidate import print_candidate

        print_candidate(result["candidate"], console)
    if not result["ratios"]:  # a subset of the phases: no ratios, only the targets they measure
        _print_targets(result, console)
        return
    for name in ("floor", "ingest", "platform", "naive"):
        console.print(f"  {name}: {result[name]['method']}")
    plat = result["platform"]
    console.print(
        f"  platform: {plat['runs']} runs ({plat['nights_per_run']['min']}-{plat['nights_per_run']['max']} nights), "
        f"first run started after {plat['first_run_start_s']} s, runs span {plat['runs_span_s']} s, "
        f"all runs over after {plat['all_runs_over_s']} s (backfill status then: {plat['backfill_status']}); "
        f"peak RSS by role: "
        + ", ".join(
            f"{r} {v['peak_rss_mib']:.0f} MiB x{v['processes']}" for r, v in plat["peak_rss"]["by_role"].items()
        )
    )
    console.print(
        f"  naive: {result['naive']['extrapolated_wall_s_for_all_nights']} s extrapolated "
        f"for {result['nights']} nights ({result['ratios']['naive_over_platform_wall']}x the platform)"
    )
    r = result["ratios"]
    console.print(
        f"[bold]sunrise ingest / floor[/]: wall {r['ingest_over_floor_wall']}, CPU {r['ingest_over_floor_cpu']} "
        f"({result['ingest']['nights_materialized']} nights materialized, {result['ingest']['runs']} runs, "
        f"exit {result['ingest']['returncode']})"
    )
    console.print(
        f"[bold]platform / floor[/]: wall {r['platform_over_floor_wall']}, CPU {r['platform_over_floor_cpu']} "
        f"(runs span / floor wall {r['platform_runs_span_over_floor_wall']})"
    )

    share = Table(title="time share per asset step (platform: night_wall_s / night_cpu_s metadata; floor: measured)")
    for col in ("step", "platform wall %", "platform CPU s", "platform % of CPU", "floor wall %", "floor CPU s"):
        share.add_column(col, justify="right" if col != "step" else "left")
    fl = result["floor"]["asset_time_share"]
    for step, v in plat["asset_time_share"].items():
        f = fl.get(step, {})
        share.add_row(
            step,
            _fmt(v["wall_share_pct"]),
            _fmt(v["cpu_s"]),
            _fmt(v["cpu_share_of_phase_pct"]),
            _fmt(f.get("wall_share_pct")),
            _fmt(f.get("cpu_s")),
        )
    console.print(share)
    inc = result["incremental"]
    console.print(
        f"incremental pass over {inc['nights']} nights, nothing new: sensor tick {inc['sensor_tick_s']} s + "
        f"automation {inc['automation_s']} s = [bold]{inc['total_s']} s[/] ({inc['runs_requested']} runs/partitions "
        f"requested; warm-up: tick {inc['warm_up']['sensor_tick']['wall_s']} s, "
        f"automation {inc['warm_up']['automation']['wall_s']} s)"
    )
    algo = result["sunalgo"]
    console.print(
        f"sunalgo alone: {algo['eight_hour_nights_per_s_per_core']} eight-hour nights/s/core "
        f"({algo['cpu_s_per_night']} CPU s per {algo['recording_hours_mean']} h night, {algo['nights']} nights x 3)"
    )
    _print_targets(result, console)


def _print_targets(result: Mapping[str, Any], console) -> None:
    from rich.table import Table

    if not result["targets"]:  # phases that no target judges
        return
    targets = Table(title="targets")
    for col in ("target", "goal", "measured", "met", "note"):
        targets.add_column(col)
    for t in result["targets"]:
        targets.add_row(
            t["target"],
            t["goal"],
            str(t["measured"]),
            "[green]yes" if t["met"] else "[red]no",
            ("extrapolated: " if t["extrapolated"] else "") + t["note"],
        )
    console.print(targets)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


# -------------------------------------------------------------------------------------- CLI


def bench_command(
    nights: Annotated[
        int, typer.Option("--nights", min=1, help="Nights to generate (cached) and push through every measurement.")
    ] = 200,
    workdir: Annotated[
        Optional[Path],
        typer.Option(
            "--workdir",
            help=(
                "Directory of the raw-night cache and of the measurement runs (needs ~3.5 MB per cached night and "
                "~17 MB per night while running; default: $SUNRISE_WORKDIR/bench)."
            ),
        ),
    ] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write every figure to this JSON file.")
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Seed of the synthetic nights (night k is the same for any N, so the cache grows)."
        ),
    ] = 7,
    naive_nights: Annotated[
        int,
        typer.Option(
            "--naive-nights", min=1, help="Nights of the naive one-run-per-night measurement (then extrapolated to N)."
        ),
    ] = 10,
    instance: Annotated[
        str,
        typer.Option(
            "--instance",
            help=(
                "Dagster instance and warehouse: sqlite (the embedded default) or postgres (deploy/dagster.yaml and "
                "a PostgreSQL warehouse, on a throwaway local cluster)."
            ),
        ),
    ] = "sqlite",
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help=(
                "Keep the measurement runs' buckets, warehouses and Dagster instances (inspect the platform's with "
                "`sunrise ui --workdir DIR/runs/platform`)."
            ),
        ),
    ] = False,
    phases: Annotated[
        str,
        typer.Option(
            "--phases",
            help=f"Comma-separated phases to run (default all: {','.join(PHASES)}); e.g. platform,candidate.",
        ),
    ] = ",".join(PHASES),
    pairs: Annotated[
        int,
        typer.Option(
            "--pairs",
            min=1,
            help=(
                "Measure the floor and `sunrise ingest` in turn this many times (floor, ingest, floor, ...); "
                "their ratio is the median of the pairs'."
            ),
        ),
    ] = 1,
) -> None:
    """Benchmark: floor (plain Python) vs the Dagster platform (backfill) vs one run per night, the
    incremental pass with nothing new, and sunalgo alone; prints and writes the figures."""
    from sunrise_assets.cli.console import UserError, out, progress_bar

    chosen = [p.strip() for p in phases.split(",") if p.strip()]
    try:
        check_phases(chosen)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    base = workdir or (settings.workdir() / "bench")
    command = (
        "sunrise bench " + " ".join(sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "bench"
        else f"sunrise bench --nights {nights}"
    )
    with progress_bar() as progress:
        result = run_bench(
            nights,
            base,
            seed=seed,
            naive_nights=naive_nights,
            keep=keep,
            progress=progress,
            command=command,
            instance=instance,
            phases=chosen,
            pairs=pairs,
        )
    print_report(result, out)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        out.print(f"figures written to {json_path}")
