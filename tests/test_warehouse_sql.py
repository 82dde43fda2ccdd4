"""The warehouse resource on SQLite: pivot and join in SQL with known values, idempotent replaces."""

import numpy as np
import pytest

from resources.sql_warehouse import WarehouseResource, identifier

FEATURES = ("alpha", "beta", "gamma")
SCORES = ("sunalgo_x", "psg_x")


@pytest.fixture
def wh(tmp_path):
    w = WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}")
    w.ensure_schema(FEATURES, SCORES)
    return w


def test_pivot_and_join_in_sql(wh):
    values = np.array([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0], [np.nan, np.nan, np.nan]])
    assert wh.replace_night_features("n1", FEATURES, values) == 5
    wh.replace_night_labels("n1", ["W", "N2", None], np.array([0, 1, 0]))
    assert wh.rebuild_training_epochs("n1", FEATURES) == 3
    rows = wh.query(
        "SELECT epoch, alpha, beta, gamma, psg_stage, psg_respiratory_event FROM training_epochs ORDER BY epoch"
    )
    assert [tuple(r.values()) for r in rows] == [
        (0, 1.0, 2.0, None, "W", 0),
        (1, 4.0, 5.0, 6.0, "N2", 1),
        (2, None, None, None, None, 0),
    ]


def test_replacing_a_night_is_idempotent_and_leaves_others(wh):
    for night in ("n1", "n2"):
        wh.replace_night_features(night, FEATURES, np.ones((2, 3)))
        wh.replace_night_labels(night, ["W", "W"], np.zeros(2))
        wh.rebuild_training_epochs(night, FEATURES)
    wh.replace_night_features("n1", FEATURES, np.full((2, 3), 7.0))
    wh.rebuild_training_epochs("n1", FEATURES)
    wh.rebuild_training_epochs("n1", FEATURES)
    rows = wh.query(
        "SELECT night_id, COUNT(*) AS n, MAX(alpha) AS a FROM training_epochs GROUP BY night_id ORDER BY night_id"
    )
    assert rows == [{"night_id": "n1", "n": 2, "a": 7.0}, {"night_id": "n2", "n": 2, "a": 1.0}]


def test_scores_row_and_nan_as_null(wh):
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": float("nan"), "psg_x": 3.5})
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": 1.0, "psg_x": 3.5})
    assert wh.query("SELECT night_id, sunalgo_x, psg_x FROM night_scores") == [
        {"night_id": "n1", "sunalgo_x": 1.0, "psg_x": 3.5}
    ]


def test_changed_feature_set_rebuilds_the_table(wh):
    wh.ensure_schema(("alpha", "delta"), SCORES)
    cols = [r["name"] for r in wh.query("PRAGMA table_info(training_epochs)")]
    assert cols == ["night_id", "epoch", "alpha", "delta", "psg_stage", "psg_respiratory_event"]


def test_added_score_columns_keep_the_rows(wh):
    """A new score column (a new agreement figure) is added; the nights already loaded stay."""
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": 1.0, "psg_x": 3.5})
    wh.ensure_schema(FEATURES, [*SCORES, "agreement_new_bias"])
    assert wh.query("SELECT night_id, sunalgo_x, psg_x, agreement_new_bias FROM night_scores") == [
        {"night_id": "n1", "sunalgo_x": 1.0, "psg_x": 3.5, "agreement_new_bias": None}
    ]
    wh.replace_night_scores("n1", {"sunalgo_version": "0", "sunalgo_x": 1.0, "psg_x": 3.5, "agreement_new_bias": -2.0})
    assert wh.query("SELECT agreement_new_bias FROM night_scores") == [{"agreement_new_bias": -2.0}]


def test_identifiers_are_validated():
    assert identifier("breath_rate") == '"breath_rate"'
    for bad in ('x"; DROP TABLE training_epochs; --', "Upper", "1abc", "a b", ""):
        with pytest.raises(ValueError):
            identifier(bad)
