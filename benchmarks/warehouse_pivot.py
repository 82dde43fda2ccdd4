"""Benchmark: build the warehouse's training table for N nights two ways, and measure each.

    uv run python benchmarks/warehouse_pivot.py --nights 500 [--epochs 960] [--postgres URL | --no-postgres]

For each database (SQLite always; PostgreSQL from --postgres URL, or a throwaway cluster started
here when the server binaries are installed), it synthesises long feature rows (N nights x epochs x
21 sunalgo features, random values, ~2% missing) and PSG labels, then runs, each stage in its own
subprocess so that peak memories never mix:

  load    the production bulk load: WarehouseResource.replace_night_features/labels per night
          (executemany on SQLite, COPY on PostgreSQL), each night in its transaction;
  sql     the production build: WarehouseResource.rebuild_training_epochs per night, i.e. the pivot
          (CASE / FILTER) and the label join IN the database;
  pandas  what it replaces: read the long table and the labels into pandas, pivot_table, merge, and
          write the result back as table training_epochs_pandas;
  verify  both tables hold the same rows and values (compared in SQL);
  export  `sunrise export-training` of every night to Parquet (streamed, bounded memory).

Reported: wall time and peak RSS of the stage's process (ru_maxrss), and its growth over the RSS
after imports. On PostgreSQL the SQL pivot runs in the server, so the client stays small: the peak
RSS of the server backend that ran it is reported too (it includes shared buffers it touched).
A benchmark, not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ("load", "sql", "pandas", "verify", "export")
STAGES_TIMED = ("load", "sql", "pandas", "export")


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def night_key(i: int) -> str:
    return f"sub-{i:08x}_ses-20240101"


# ----------------------------------------------------------------------------------- stages
def stage_load(url: str, nights: int, epochs: int) -> dict:
    import numpy as np

    from resources.sql_warehouse import WarehouseResource
    from sunalgo.features import FEATURE_NAMES
    from sunrise_assets.defs.warehouse import SCORE_COLUMNS

    wh = WarehouseResource(url=url)
    wh.ensure_schema(FEATURE_NAMES, SCORE_COLUMNS)
    stages = np.array(["W", "N1", "N2", "N3", "REM"], dtype=object)
    base = _rss_kb()
    t0 = time.perf_counter()
    rows = 0
    for i in range(nights):
        rng = np.random.default_rng(i)
        values = rng.normal(size=(epochs, len(FEATURE_NAMES)))
        values[rng.random(values.shape) < 0.02] = np.nan
        rows += wh.replace_night_features(night_key(i), FEATURE_NAMES, values)
        labels = stages[rng.integers(0, 5, epochs)].tolist()
        labels[-1] = None  # an unscored epoch
        wh.replace_night_labels(night_key(i), labels, rng.integers(0, 2, epochs))
    wall = time.perf_counter() - t0
    if wh.dialect == "postgresql":
        with wh.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return {"wall_s": wall, "rows": rows, "base_kb": base}


def stage_sql(url: str, nights: int, epochs: int) -> dict:
    from resources.sql_warehouse import WarehouseResource
    from sunalgo.features import FEATURE_NAMES

    wh = WarehouseResource(url=url)
    server_pid = wh.query("SELECT pg_backend_pid() AS pid")[0]["pid"] if wh.dialect == "postgresql" else None
    base = _rss_kb()
    t0 = time.perf_counter()
    rows = sum(wh.rebuild_training_epochs(night_key(i), FEATURE_NAMES) for i in range(nights))
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "rows": rows, "base_kb": base}
    if server_pid is not None and wh.query("SELECT pg_backend_pid() AS pid")[0]["pid"] == server_pid:
        out["server_peak_kb"] = _hwm_kb(server_pid)
    return out


def stage_pandas(url: str, nights: int, epochs: int) -> dict:
    import pandas as pd

    from resources.sql_warehouse import WarehouseResource
    from sunalgo.features import FEATURE_NAMES

    wh = WarehouseResource(url=url)
    base = _rss_kb()
    t0 = time.perf_counter()
    with wh.engine.connect() as conn:
        long = pd.read_sql_query("SELECT night_id, epoch, feature, value FROM epoch_features_long", conn)
        labels = pd.read_sql_query(
            "SELECT night_id, epoch, psg_stage, psg_respiratory_event FROM psg_epoch_labels", conn
        )
    t_read = time.perf_counter()
    wide = long.pivot_table(index=["night_id", "epoch"], columns="feature", values="value", aggfunc="first")
    wide = wide.reindex(columns=list(FEATURE_NAMES)).reset_index()
    wide.columns.name = None
    table = labels.merge(wide, on=["night_id", "epoch"], how="left")
    table = table[["night_id", "epoch", *FEATURE_NAMES, "psg_stage", "psg_respiratory_event"]]
    t_pivot = time.perf_counter()
    with wh.engine.begin() as conn:
        table.to_sql("training_epochs_pandas", conn, if_exists="replace", index=False, chunksize=20_000)
    t_write = time.perf_counter()
    return {
        "wall_s": t_write - t0,
        "rows": len(table),
        "base_kb": base,
        "read_s": t_read - t0,
        "pivot_join_s": t_pivot - t_read,
        "write_s": t_write - t_pivot,
    }


def stage_verify(url: str, nights: int, epochs: int) -> dict:
    from resources.sql_warehouse import WarehouseResource, identifier
    from sunalgo.features import FEATURE_NAMES

    wh = WarehouseResource(url=url)
    same = "IS NOT DISTINCT FROM" if wh.dialect == "postgresql" else "IS"
    cols = [*FEATURE_NAMES, "psg_stage", "psg_respiratory_event"]
    cond = " AND ".join(f"t.{identifier(c)} {same} p.{identifier(c)}" for c in cols)
    identical = wh.query(
        f"SELECT COUNT(*) AS n FROM training_epochs t JOIN training_epochs_pandas p "
        f"ON p.night_id = t.night_id AND p.epoch = t.epoch WHERE {cond}"
    )[0]["n"]
    totals = [wh.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in ("training_epochs", "training_epochs_pandas")]
    return {
        "wall_s": 0.0,
        "rows": identical,
        "base_kb": _rss_kb(),
        "sql_rows": totals[0],
        "pandas_rows": totals[1],
        "identical": identical == totals[0] == totals[1] == nights * epochs,
    }


def stage_export(url: str, nights: int, epochs: int) -> dict:
    import pyarrow.parquet  # noqa: F401  (imported before the baseline, like the other stages' libraries)

    import sunalgo  # noqa: F401
    from resources.sql_warehouse import WarehouseResource
    from sunrise_assets.cli.export import export_training

    WarehouseResource(url=url).query("SELECT 1 AS one")  # driver loaded, connection pooled
    base = _rss_kb()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest = export_training(Path(tmp) / "training.parquet", None, warehouse_url=url)
        wall = time.perf_counter() - t0
        size = (Path(tmp) / "training.parquet").stat().st_size
    return {
        "wall_s": wall,
        "rows": manifest["rows"],
        "base_kb": base,
        "parquet_mb": size / 1e6,
        "server_side_cursor": manifest["stream"]["server_side_cursor"],
    }


def run_stage(stage: str, url: str, nights: int, epochs: int) -> None:
    result = globals()[f"stage_{stage}"](url, nights, epochs)
    result["peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------------- driver
def child(stage: str, url: str, nights: int, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--url", url, "--nights", str(nights), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{proc.stderr[-4000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def fmt_mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.0f} MB"


def bench(name: str, url: str, nights: int, epochs: int) -> dict:
    print(f"\n== {name}: {nights} nights x {epochs} epochs x 21 features ==", flush=True)
    results = {}
    for stage in STAGES:
        results[stage] = r = child(stage, url, nights, epochs)
        if stage == "verify":
            print(
                f"  verify   SQL table {r['sql_rows']:,} rows, pandas table {r['pandas_rows']:,} rows, "
                f"identical rows {r['rows']:,}: {'IDENTICAL' if r['identical'] else 'DIFFERENT'}",
                flush=True,
            )
            continue
        extra = ""
        if stage == "pandas":
            extra = (
                f"  (read {r['read_s']:.1f} s, pivot+merge {r['pivot_join_s']:.1f} s, write back {r['write_s']:.1f} s)"
            )
        if stage == "sql" and r.get("server_peak_kb"):
            extra = f"  (server backend peak RSS {fmt_mb(r['server_peak_kb'])})"
        if stage == "export":
            extra = f"  ({r['parquet_mb']:.0f} MB Parquet, server-side cursor: {r['server_side_cursor']})"
        print(
            f"  {stage:<7}  {r['wall_s']:8.1f} s   peak RSS {fmt_mb(r['peak_kb']):>9}   "
            f"growth {fmt_mb(r['peak_kb'] - r['base_kb']):>9}   {r['rows']:>11,} rows{extra}",
            flush=True,
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=500, help="nights to synthesise (default 500)")
    ap.add_argument("--epochs", type=int, default=960, help="epochs per night (default 960: 8 h)")
    ap.add_argument(
        "--postgres", help="SQLAlchemy URL of an EMPTY PostgreSQL database to use (postgresql+psycopg2://...)"
    )
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        run_stage(args.stage, args.url, args.nights, args.epochs)
        return

    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python "
        f"{platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="sunrise-bench-") as tmp:
        if not args.no_sqlite:
            bench("SQLite", f"sqlite:///{tmp}/warehouse.sqlite", args.nights, args.epochs)
        if args.no_postgres:
            return
        if args.postgres:
            bench("PostgreSQL", args.postgres, args.nights, args.epochs)
            return
        from tests.support.postgres import PostgresCluster, PostgresUnavailable

        try:
            cluster = PostgresCluster().start()
        except PostgresUnavailable as exc:
            print(f"\nPostgreSQL skipped: {exc} (pass --postgres URL)")
            return
        try:
            print("(throwaway PostgreSQL cluster: fsync=off, default shared_buffers/work_mem)")
            bench("PostgreSQL", cluster.create_database("bench"), args.nights, args.epochs)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
