"""`sunrise export-training`: training_epochs streamed to Parquet in bounded batches, with a manifest;
on SQLite and on PostgreSQL (server-side cursor)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from resources.sql_warehouse import WarehouseResource
from sunrise_assets.cli.export import MANIFEST_KEY, ExportError, export_training, manifest_path

FEATURES = ("alpha", "beta", "gamma")
SCORES = ("sunalgo_x",)
NIGHTS = [f"sub-{i:08x}_ses-20240101" for i in range(5)]
_db_names = itertools.count()


def _fill(wh: WarehouseResource) -> dict[str, np.ndarray]:
    wh.ensure_schema(FEATURES, SCORES)
    rng = np.random.default_rng(3)
    values = {}
    for i, night in enumerate(NIGHTS):
        n_epochs = 300 + 17 * i
        v = rng.normal(size=(n_epochs, len(FEATURES)))
        v[rng.random(v.shape) < 0.05] = np.nan
        wh.replace_night_features(night, FEATURES, v)
        wh.replace_night_labels(night, rng.choice(["W", "N2", "REM"], n_epochs).tolist(), rng.integers(0, 2, n_epochs))
        wh.rebuild_training_epochs(night, FEATURES)
        wh.replace_night_scores(night, {"sunalgo_version": f"1.{i % 2}", "sunalgo_x": 1.0})
        values[night] = v
    return values


@pytest.fixture(params=["sqlite", "postgresql"])
def filled(request, tmp_path):
    if request.param == "sqlite":
        wh = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}")
    else:
        wh = WarehouseResource(url=request.getfixturevalue("postgres").create_database(f"export_{next(_db_names)}"))
    values = _fill(wh)
    yield wh, values
    wh.engine.dispose()


def test_export_streams_every_row_in_bounded_batches(filled, tmp_path):
    wh, values = filled
    out = tmp_path / "train.parquet"
    manifest = export_training(out, None, warehouse_url=wh.url, batch_rows=128)
    table = pq.read_table(out)
    total = sum(v.shape[0] for v in values.values())
    assert table.num_rows == manifest["rows"] == total
    assert table.column_names == ["night_id", "epoch", *FEATURES, "psg_stage", "psg_respiratory_event"]
    for night, v in values.items():
        part = table.filter(table["night_id"].to_numpy(zero_copy_only=False) == night)
        assert part["epoch"].to_pylist() == list(range(v.shape[0]))
        got = np.column_stack([part[f].to_numpy(zero_copy_only=False).astype(float) for f in FEATURES])
        np.testing.assert_array_equal(got, v)  # NaN where the feature was missing, exact values elsewhere

    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == manifest["stream"]["batches"] == -(-total // 128)
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 128
    assert manifest["stream"]["largest_batch"] <= 128
    if wh.dialect == "postgresql":
        assert manifest["stream"]["server_side_cursor"] is True

    side = json.loads(manifest_path(out).read_text())
    embedded = json.loads(meta.metadata[MANIFEST_KEY.encode()])
    assert (
        side["nights"]
        == embedded["nights"]
        == [
            {"night_id": n, "epochs": values[n].shape[0], "sunalgo_version": f"1.{i % 2}"} for i, n in enumerate(NIGHTS)
        ]
    )
    assert side["code_versions"]["sunalgo"] == ["1.0", "1.1"] and side["features"] == list(FEATURES)
    assert side["warehouse_dialect"] == wh.dialect and len(side["sha256"]) == 64
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_export_chosen_nights_and_unknown_night(filled, tmp_path):
    wh, values = filled
    out = tmp_path / "two.parquet"
    manifest = export_training(out, [NIGHTS[3], NIGHTS[1]], warehouse_url=wh.url)
    assert [n["night_id"] for n in manifest["nights"]] == [NIGHTS[1], NIGHTS[3]]
    assert pq.read_table(out).num_rows == values[NIGHTS[1]].shape[0] + values[NIGHTS[3]].shape[0]
    with pytest.raises(ExportError, match="sub-deadbeef_ses-20240101"):
        export_training(tmp_path / "none.parquet", [NIGHTS[0], "sub-deadbeef_ses-20240101"], warehouse_url=wh.url)
    assert not (tmp_path / "none.parquet").exists()


def test_export_on_an_empty_warehouse_says_so(tmp_path):
    with pytest.raises(ExportError, match="run the pipeline first"):
        export_training(tmp_path / "x.parquet", None, warehouse_url=f"sqlite:///{tmp_path / 'empty.sqlite'}")


def test_sunrise_export_training_command(tmp_path):
    from typer.testing import CliRunner

    from sunrise_assets.cli.app import app

    wh = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}")
    values = _fill(wh)
    out = tmp_path / "cli.parquet"
    args = [
        "export-training",
        "--out",
        str(out),
        "--nights",
        f"{NIGHTS[0]},{NIGHTS[2]}",
        "--nights",
        NIGHTS[4],
        "--warehouse",
        wh.url,
        "--batch-rows",
        "100",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 nights" in result.output
    assert pq.read_table(out).num_rows == sum(values[n].shape[0] for n in (NIGHTS[0], NIGHTS[2], NIGHTS[4]))
    bad = CliRunner().invoke(app, [*args[:3], "--nights", "sub-00000000_ses-19990101", "--warehouse", wh.url])
    assert bad.exit_code == 2 and "not in training_epochs" in bad.output
    assert "--nights" in CliRunner().invoke(app, ["export-training", "--help"]).output
