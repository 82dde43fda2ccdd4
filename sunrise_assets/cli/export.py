"""`sunrise export-training`: stream ``training_epochs`` from the warehouse to a Parquet file.

Rows come through a server-side cursor on PostgreSQL (SQLAlchemy ``stream_results`` + ``yield_per``;
SQLite's cursor is lazy by itself) and go out one Parquet row group per batch, so memory is bounded
by ``batch_rows`` whatever the size of the table. The file is written to a temp name and renamed at
the end, with a manifest (JSON sidecar ``FILE.parquet.manifest.json`` and the same JSON in the
Parquet key-value metadata under ``sunrise.manifest``) naming the nights it holds, their epochs,
the sunalgo version that scored each night (``night_scores.sunalgo_version``) and the feature list.
On PostgreSQL the whole export reads one snapshot (REPEATABLE READ), so rows and manifest agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_KEY = "sunrise.manifest"
MANIFEST_FORMAT = "sunrise.training_epochs.v1"
DEFAULT_BATCH_ROWS = 20_000


class ExportError(Exception):
    """A request the warehouse cannot satisfy (no table yet, unknown nights)."""


def manifest_path(out: Path) -> Path:
    return out.with_name(out.name + MANIFEST_SUFFIX)


def _platform_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sunrise-platform")
    except PackageNotFoundError:
        return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_training(
    out: Path,
    nights: Sequence[str] | None = None,
    *,
    warehouse_url: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> dict[str, Any]:
    """Write ``training_epochs`` (all nights, or ``nights``) to ``out``; returns the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import bindparam, text

    import sunalgo
    from resources.sql_warehouse import WarehouseResource, identifier
    from sunrise_assets import settings

    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    wanted = sorted(set(nights)) if nights else None
    wh = WarehouseResource(url=warehouse_url or settings.warehouse_url(), password=settings.warehouse_password())
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    def in_nights(sql: str) -> Any:
        stmt = text(sql)
        return stmt.bindparams(bindparam("nights", expanding=True)) if wanted else stmt

    night_filter = "WHERE night_id IN :nights" if wanted else ""
    params = {"nights": wanted} if wanted else {}
    conn = wh.engine.connect()
    tmp_name = None
    try:
        if wh.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            meta = (
                conn.execute(text("SELECT value FROM warehouse_meta WHERE key = 'training_epochs'")).first()
                if _has_table(conn, "warehouse_meta")
                else None
            )
            if meta is None:
                raise ExportError("the warehouse has no training_epochs table yet: run the pipeline first")
            features = json.loads(meta[0])
            columns = ["night_id", "epoch", *features, "psg_stage", "psg_respiratory_event"]
            expected = {
                r[0]: int(r[1])
                for r in conn.execute(
                    in_nights(f"SELECT night_id, COUNT(*) FROM training_epochs {night_filter} GROUP BY night_id"),
                    params,
                )
            }
            if wanted:
                missing = [n for n in wanted if n not in expected]
                if missing:
                    raise ExportError(f"not in training_epochs: {', '.join(missing)}")
            if not expected:
                raise ExportError("training_epochs holds no nights")
            versions = {
                r[0]: r[1]
                for r in conn.execute(
                    in_nights(f"SELECT night_id, sunalgo_version FROM night_scores {night_filter}"), params
                )
            }

            schema = pa.schema(
                [pa.field("night_id", pa.string(), nullable=False), pa.field("epoch", pa.int32(), nullable=False)]
                + [pa.field(f, pa.float64()) for f in features]
                + [pa.field("psg_stage", pa.string()), pa.field("psg_respiratory_event", pa.int8(), nullable=False)]
            )
            select = in_nights(
                f"SELECT {', '.join(identifier(c) for c in columns)} FROM training_epochs {night_filter} "
                "ORDER BY night_id, epoch"
            )
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(select, params)
            server_side = bool(getattr(result.cursor, "name", None)) if wh.dialect == "postgresql" else None

            fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{out.name}-", dir=out.parent)
            os.close(fd)
            counts: dict[str, int] = {}
            rows_total = batches = max_batch = 0
            with pq.ParquetWriter(tmp_name, schema, compression="zstd") as writer:
                for rows in result.partitions(batch_rows):
                    cols = list(zip(*rows))
                    batch = pa.RecordBatch.from_arrays(
                        [pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema
                    )
                    writer.write_batch(batch, row_group_size=batch_rows)
                    for night in cols[0]:
                        counts[night] = counts.get(night, 0) + 1
                    rows_total += len(rows)
                    batches += 1
                    max_batch = max(max_batch, len(rows))
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "table": "training_epochs",
                    "file": out.name,
                    "rows": rows_total,
                    "columns": columns,
                    "features": features,
                    "nights": [
                        {"night_id": n, "epochs": counts[n], "sunalgo_version": versions.get(n)} for n in sorted(counts)
                    ],
                    "code_versions": {
                        "sunalgo": sorted({v for v in versions.values() if v is not None}),
                        "sunalgo_of_exporter": sunalgo.__version__,
                        "sunrise_platform": _platform_version(),
                    },
                    "warehouse_dialect": wh.dialect,
                }
                writer.add_key_value_metadata({MANIFEST_KEY: json.dumps(manifest, sort_keys=True)})
            if counts != expected:
                raise ExportError(f"rows changed during the export (expected {expected}, streamed {counts})")
        manifest["sha256"] = _file_sha256(Path(tmp_name))
        manifest["stream"] = {
            "batch_rows": batch_rows,
            "batches": batches,
            "largest_batch": max_batch,
            "server_side_cursor": server_side,
        }
        os.replace(tmp_name, out)
        tmp_name = None
        side = manifest_path(out)
        side_tmp = side.with_name(f".tmp-{side.name}")
        side_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(side_tmp, side)
        return manifest
    finally:
        conn.close()
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def _has_table(conn, name: str) -> bool:
    from sqlalchemy import inspect

    return inspect(conn).has_table(name)


def export_training_command(
    out: Annotated[
        Path,
        typer.Option("--out", help="Parquet file to write; its manifest goes beside it as FILE.parquet.manifest.json."),
    ],
    nights: Annotated[
        Optional[list[str]],
        typer.Option(
            "--nights",
            help=(
                "Nights to export: repeat the option or separate keys with commas (default: every night in "
                "training_epochs)."
            ),
        ),
    ] = None,
    warehouse: Annotated[
        Optional[str],
        typer.Option(
            "--warehouse",
            help=(
                "SQLAlchemy URL of the warehouse (default: $SUNRISE_WAREHOUSE_URL, else the work directory's SQLite "
                "file)."
            ),
        ),
    ] = None,
    workdir: Annotated[
        Optional[Path],
        typer.Option(
            "--workdir", help="Work directory of the embedded default (default: $SUNRISE_WORKDIR or ./.sunrise)."
        ),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option(
            "--batch-rows",
            min=1,
            help="Rows fetched per batch and written per Parquet row group: bounds the memory used.",
        ),
    ] = DEFAULT_BATCH_ROWS,
) -> None:
    """Stream the training_epochs table to Parquet, with a manifest of its nights and code versions."""
    from sunrise_assets import settings

    if workdir is not None:
        os.environ["SUNRISE_WORKDIR"] = str(workdir.expanduser().resolve())
    keys = [k.strip() for item in (nights or []) for k in item.split(",") if k.strip()] or None
    try:
        manifest = export_training(
            out, keys, warehouse_url=warehouse or settings.warehouse_url(), batch_rows=batch_rows
        )
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    versions = ", ".join(manifest["code_versions"]["sunalgo"]) or "unknown"
    typer.echo(
        f"{manifest['rows']} epochs of {len(manifest['nights'])} nights (sunalgo {versions}) -> {out} "
        f"(+ {manifest_path(Path(out)).name})"
    )
