"""The warehouse resource on PostgreSQL (throwaway cluster) and SQLite: the same behaviour on both;
COPY loads, FILTER pivot, per-night transactions, and EXPLAIN plans that use the indexes."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

import resources.sql_warehouse as warehouse_module
from resources.sql_warehouse import WarehouseResource, sql_statements

FEATURES = ("alpha", "beta", "gamma")
SCORES = ("sunalgo_x", "psg_x")
_db_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def wh(request, tmp_path):
    if request.param == "sqlite":
        w = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}")
    else:
        pg = request.getfixturevalue("postgres")
        w = WarehouseResource(url=pg.create_database(f"wh_{next(_db_names)}"))
    w.ensure_schema(FEATURES, SCORES)
    yield w
    w.engine.dispose()


@pytest.fixture
def pg_wh(postgres):
    w = WarehouseResource(url=postgres.create_database(f"wh_{next(_db_names)}"))
    yield w
    w.engine.dispose()


def _training(wh):
    return [
        tuple(r.values())
        for r in wh.query(
            "SELECT night_id, epoch, alpha, beta, gamma, psg_stage, psg_respiratory_event "
            "FROM training_epochs ORDER BY night_id, epoch"
        )
    ]


def test_dialect_specific_sql_is_chosen(wh):
    build, params = wh.training_build_sql(FEATURES)
    if wh.dialect == "postgresql":
        assert 'MAX(f.value) FILTER (WHERE f.feature = :feature_0) AS "alpha"' in build
        assert sql_statements("load.sql", wh.dialect)["features"].startswith("COPY epoch_features_long")
    else:
        assert 'MAX(CASE WHEN f.feature = :feature_0 THEN f.value END) AS "alpha"' in build
    assert params == {"feature_0": "alpha", "feature_1": "beta", "feature_2": "gamma"}
    assert "alpha" not in build.replace('"alpha"', "")  # names are bound, never formatted in as values


def test_pivot_and_join_in_sql_with_exact_values(wh):
    tiny = np.nextafter(1.0, 2.0)  # values survive the load bit for bit (COPY text included)
    values = np.array([[1.0, 2.0, np.nan], [0.1 + 0.2, 1e-300, -tiny], [np.nan, np.nan, np.nan]])
    assert wh.replace_night_features("n1", FEATURES, values) == 5
    assert wh.replace_night_labels("n1", ["W", "N2", None], np.array([0, 1, 0])) == 3
    assert wh.rebuild_training_epochs("n1", FEATURES) == 3
    assert _training(wh) == [
        ("n1", 0, 1.0, 2.0, None, "W", 0),
        ("n1", 1, 0.1 + 0.2, 1e-300, -tiny, "N2", 1),
        ("n1", 2, None, None, None, None, 0),
    ]


def test_replacing_a_night_is_idempotent_and_leaves_others(wh):
    for night in ("n1", "n2"):
        wh.replace_night_features(night, FEATURES, np.ones((2, 3)))
        wh.replace_night_labels(night, ["W", "W"], np.zeros(2))
        wh.rebuild_training_epochs(night, FEATURES)
    for _ in range(2):
        wh.replace_night_features("n1", FEATURES, np.full((2, 3), 7.0))
        wh.replace_night_labels("n1", ["N3", "W"], np.zeros(2))
        wh.rebuild_training_epochs("n1", FEATURES)
    rows = wh.query(
        "SELECT night_id, COUNT(*) AS n, MAX(alpha) AS a FROM training_epochs GROUP BY night_id ORDER BY night_id"
    )
    assert rows == [{"night_id": "n1", "n": 2, "a": 7.0}, {"night_id": "n2", "n": 2, "a": 1.0}]
    assert wh.query("SELECT COUNT(*) AS n FROM epoch_features_long")[0]["n"] == 12
    assert wh.delete_nights(["n2"]) == {
        "epoch_features_long": 6,
        "psg_epoch_labels": 2,
        "training_epochs": 2,
        "night_scores": 0,
        "candidate_scores": 0,
    }
    assert [r["night_id"] for r in wh.query("SELECT DISTINCT night_id FROM training_epochs")] == ["n1"]


def test_a_crash_mid_replace_leaves_the_previous_version(wh, monkeypatch):
    wh.replace_night_features("n1", FEATURES, np.ones((2, 3)))
    wh.replace_night_labels("n1", ["W", "W"], np.zeros(2))
    wh.rebuild_training_epochs("n1", FEATURES)
    before = _training(wh)

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed mid-load")

    # The DELETE of the night has run in the transaction when the bulk load dies.
    if wh.dialect == "postgresql":
        monkeypatch.setattr(warehouse_module, "_copy", crash)
        expected = RuntimeError
    else:
        real = warehouse_module.sql_statements

        def failing_load(name, dialect=None):
            statements = real(name, dialect)
            return (
                {**statements, "features": "INSERT INTO no_such_table VALUES (:night_id)"}
                if name == "load.sql"
                else statements
            )

        monkeypatch.setattr(warehouse_module, "sql_statements", failing_load)
        expected = OperationalError  # the INSERT into a missing table, inside the transaction
    with pytest.raises(expected):
        wh.replace_night_features("n1", FEATURES, np.full((2, 3), 9.0))
    monkeypatch.undo()
    assert wh.query("SELECT COUNT(*) AS n, MAX(value) AS v FROM epoch_features_long WHERE night_id = 'n1'") == [
        {"n": 6, "v": 1.0}
    ]
    build, params = wh.training_build_sql(FEATURES)
    monkeypatch.setattr(
        WarehouseResource,
        "training_build_sql",
        lambda self, names: (build.replace("psg_epoch_labels", "no_such_table"), params),
    )
    with pytest.raises(DBAPIError):  # OperationalError on SQLite, ProgrammingError on PostgreSQL
        wh.rebuild_training_epochs("n1", FEATURES)
    monkeypatch.undo()
    assert _training(wh) == before


def test_scores_row_and_nan_as_null(wh):
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": float("nan"), "psg_x": 3.5})
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": 1.0, "psg_x": 3.5})
    assert wh.query("SELECT night_id, sunalgo_x, psg_x FROM night_scores") == [
        {"night_id": "n1", "sunalgo_x": 1.0, "psg_x": 3.5}
    ]


def test_changed_feature_set_rebuilds_the_table(wh):
    wh.replace_night_labels("n1", ["W"], np.zeros(1))
    wh.rebuild_training_epochs("n1", FEATURES)
    wh.ensure_schema(("alpha", "delta"), SCORES)
    wh.ensure_schema(("alpha", "delta"), SCORES)
    assert wh.query("SELECT * FROM training_epochs") == []  # rebuilt empty
    with wh.engine.connect() as conn:
        cols = list(conn.exec_driver_sql("SELECT * FROM training_epochs").keys())
    assert cols == ["night_id", "epoch", "alpha", "delta", "psg_stage", "psg_respiratory_event"]


def test_added_score_columns_keep_the_rows(pg_wh):
    pg_wh.ensure_schema(FEATURES, SCORES)
    pg_wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": 1.0, "psg_x": 3.5})
    pg_wh.ensure_schema(FEATURES, [*SCORES, "agreement_new_bias"])
    assert pg_wh.query("SELECT night_id, sunalgo_x, agreement_new_bias FROM night_scores") == [
        {"night_id": "n1", "sunalgo_x": 1.0, "agreement_new_bias": None}
    ]


def test_postgres_loads_with_copy(pg_wh, monkeypatch):
    pg_wh.ensure_schema(FEATURES, SCORES)
    calls = []
    real = warehouse_module._copy
    monkeypatch.setattr(
        warehouse_module, "_copy", lambda conn, stmt, data: (calls.append(stmt.split()[1]), real(conn, stmt, data))
    )
    pg_wh.replace_night_features("n\\odd\tname", FEATURES, np.ones((4, 3)))
    pg_wh.replace_night_labels("n\\odd\tname", ["W", None, "REM", "N1"], np.array([1, 0, 0, 1]))
    assert calls == ["epoch_features_long", "psg_epoch_labels"]
    assert pg_wh.rebuild_training_epochs("n\\odd\tname", FEATURES) == 4
    assert {r["night_id"] for r in pg_wh.query("SELECT night_id FROM training_epochs")} == {"n\\odd\tname"}


def _plan(wh, sql, params):
    return "\n".join(r["QUERY PLAN"] for r in wh.query("EXPLAIN " + sql, params))


def test_explain_uses_the_indexes_on_postgres(pg_wh):
    """40 nights x 960 epochs x 21 features (806k long rows): the per-night replace and the label
    join find one night through the primary keys, never by scanning a table."""
    features = tuple(f"feat_{i:02d}" for i in range(21))
    pg_wh.ensure_schema(features, SCORES)
    rng = np.random.default_rng(0)
    nights = [f"sub-{n:08x}_ses-20240101" for n in range(40)]
    for night in nights:
        values = rng.normal(size=(960, 21))
        values[rng.random(values.shape) < 0.02] = np.nan
        pg_wh.replace_night_features(night, features, values)
        pg_wh.replace_night_labels(
            night, rng.choice(["W", "N1", "N2", "N3", "REM"], 960).tolist(), rng.integers(0, 2, 960)
        )
        pg_wh.rebuild_training_epochs(night, features)
    with pg_wh.engine.begin() as conn:  # what autovacuum does after a big load
        conn.exec_driver_sql("ANALYZE")
    night = {"night_id": nights[17]}

    deletes = sql_statements("replace_night.sql")
    for name, table in (
        ("delete_features", "epoch_features_long"),
        ("delete_labels", "psg_epoch_labels"),
        ("delete_training", "training_epochs"),
    ):
        plan = _plan(pg_wh, deletes[name], night)
        assert re.search(rf"Index (Only )?Scan (using|on) {table}_pkey", plan), plan
        assert "Seq Scan" not in plan, plan

    build, params = pg_wh.training_build_sql(features)
    plan = _plan(pg_wh, build, {**params, **night})
    assert re.search(r"Index (Only )?Scan (using|on) psg_epoch_labels_pkey", plan), plan
    assert re.search(r"Index (Only )?Scan (using|on) epoch_features_long_pkey", plan), plan
    assert "Seq Scan" not in plan, plan
    assert pg_wh.query("SELECT COUNT(*) AS n FROM training_epochs")[0]["n"] == 40 * 960


def test_the_training_table_streams_night_by_night_in_key_order(wh):
    """What the model asset reads: every night whole, in Python's string order on both dialects,
    NULL features as NaN, stages as codes (-1 unscored), across several driver batches."""
    nights = ["sub-b_ses-1", "sub-B_ses-1", "sub-a_ses-2", "sub-a_ses-10"]  # upper case sorts first in bytes
    for k, night in enumerate(nights):
        values = np.arange(9, dtype=float).reshape(3, 3) + 10 * k
        values[1, 2] = np.nan  # a feature the sensor did not give
        wh.replace_night_features(night, FEATURES, values)
        wh.replace_night_labels(night, ["W", None, "REM"], np.array([0, 1, k % 2]))
        wh.rebuild_training_epochs(night, FEATURES)
    streamed = list(wh.stream_training_nights(FEATURES, ("W", "N1", "N2", "N3", "REM"), batch_rows=2))
    assert [s[0] for s in streamed] == sorted(nights)
    for night, epochs, features, stages, flags in streamed:
        k = nights.index(night)
        assert epochs.tolist() == [0, 1, 2] and stages.tolist() == [0, -1, 4] and flags.tolist() == [0, 1, k % 2]
        expected = np.arange(9, dtype=float).reshape(3, 3) + 10 * k
        expected[1, 2] = np.nan
        np.testing.assert_array_equal(features, expected)
