"""Fitting sunalgo's model from the warehouse's training table, with a subject-level held-out split.

The split is sunalgo.subject_split's: a fixed share of subjects (HELD_OUT_SHARE), chosen from a
hash of the subject pseudonym, so a subject's side never changes as nights are added. The model is
fitted on the other subjects' nights (streamed twice from SQL, memory flat in the number of nights)
and the model card's metrics come from the held-out subjects' nights only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

import sunalgo
from sunalgo import model_card, subject_split, warehouse_fit
from sunalgo.features import FEATURE_NAMES
from sunalgo.labels import STAGES

# The held-out subjects' nights are small (20 %); the fit samples at most this many epochs.
MAX_FIT_EPOCHS = warehouse_fit.DEFAULT_MAX_EPOCHS


class TrainingTable(Protocol):
    """What fitting needs of the warehouse (resources.sql_warehouse.WarehouseResource has it)."""

    def stream_training_nights(
        self, feature_names: Sequence[str], stages: Sequence[str], batch_rows: int = ...
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]: ...

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class FittedModel:
    params: dict[str, Any]
    card: dict[str, Any]
    seconds: float


def psg_event_counts(table: TrainingTable) -> dict[str, float]:
    """PSG respiratory events per night, from night_scores (AHI x TST): the calibration's counts."""
    rows = table.query("SELECT night_id, psg_ahi, psg_total_sleep_time_min FROM night_scores")
    return {
        r["night_id"]: float(r["psg_ahi"]) * float(r["psg_total_sleep_time_min"]) / 60.0
        for r in rows
        if r["psg_ahi"] is not None and r["psg_total_sleep_time_min"] is not None
    }


def training_nights(
    table: TrainingTable, *, held_out: bool, event_counts: dict[str, float]
) -> Callable[[], Iterator[warehouse_fit.TrainingNight]]:
    """A re-callable stream of one side of the split (each call reads the table again)."""

    def read() -> Iterator[warehouse_fit.TrainingNight]:
        for night_id, _epochs, features, stages, flags in table.stream_training_nights(FEATURE_NAMES, STAGES):
            if subject_split.is_held_out(subject_split.subject_of(night_id)) != held_out:
                continue
            yield warehouse_fit.TrainingNight(
                night_id, features, stages, flags.astype(bool), event_counts.get(night_id)
            )

    return read


def fit_from_warehouse(table: TrainingTable, *, max_epochs: int = MAX_FIT_EPOCHS) -> FittedModel:
    """Fit on the training subjects, evaluate on the held-out ones; raises ValueError when a side is empty."""
    began = time.perf_counter()
    counts = psg_event_counts(table)
    train = training_nights(table, held_out=False, event_counts=counts)
    nights, subjects = _census(table)
    if not nights["train"]:
        raise ValueError("the training table has no night of a training subject: ingest nights first")
    # One BLAS thread: a multithreaded BLAS sums in an order that depends on the thread count, and the
    # optimiser carries the last-bit differences into the 8th digit of the parameters, so the same data
    # would not give the same bytes (the same version) in a run process and in a notebook.
    with threadpool_limits(limits=1, user_api="blas"):
        params = _fit(train, max_epochs, nights, subjects)
    held_out = model_card.model_card(params, training_nights(table, held_out=True, event_counts=counts)())
    card = {
        "sunalgo_version": sunalgo.__version__,
        "features": list(FEATURE_NAMES),
        "split": params["training"]["split"],
        "training": {
            "nights": nights["train"],
            "subjects": subjects["train"],
            "epochs_fitted": params["fit"]["fit_sample_epochs"],
        },
        "held_out": held_out,
    }
    return FittedModel(params, card, time.perf_counter() - began)


def _fit(train, max_epochs: int, nights: dict[str, int], subjects: dict[str, int]) -> dict[str, Any]:
    return warehouse_fit.fit_streamed(
        train,
        max_epochs=max_epochs,
        training={
            "source": "warehouse training_epochs",
            "split": f"subject-level, {subject_split.HELD_OUT_SHARE:.0%} of subjects held out (sunalgo.subject_split)",
            "nights": nights["train"],
            "subjects": subjects["train"],
        },
    )


def _census(table: TrainingTable) -> tuple[dict[str, int], dict[str, int]]:
    """Nights and subjects on each side of the split (one small query)."""
    rows = table.query("SELECT DISTINCT night_id FROM training_epochs")
    nights = {"train": 0, "held_out": 0}
    subjects: dict[str, set[str]] = {"train": set(), "held_out": set()}
    for r in rows:
        subject = subject_split.subject_of(r["night_id"])
        side = "held_out" if subject_split.is_held_out(subject) else "train"
        nights[side] += 1
        subjects[side].add(subject)
    return nights, {side: len(s) for side, s in subjects.items()}


def card_markdown(version: str, card: dict[str, Any]) -> str:
    """The model card for the UI and the CLI: what it was trained on, then its held-out metrics."""
    training = card["training"]
    head = [
        f"## Model {version}",
        "",
        f"sunalgo {card['sunalgo_version']}; {len(card['features'])} features; {card['split']}.",
        f"Trained on {training['nights']} nights of {training['subjects']} subjects "
        f"({training['epochs_fitted']} epochs sampled for the regressions).",
        "",
    ]
    return "\n".join(head) + model_card.render_markdown(card["held_out"])
