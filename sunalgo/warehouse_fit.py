"""Fit sunalgo's model on nights streamed from the warehouse, in memory that does not grow with nights.

:func:`fit_streamed` produces the params of :func:`sunalgo.model.fit` (same layout, so
``model_from_params`` / ``predict`` / ``save_model`` work) from a ``read_nights`` callable that
re-streams the training nights, one :class:`TrainingNight` at a time in night_id order, on each call.
It reads the stream twice:

1. Sampling pass. Every epoch gets a 64-bit key hashed from (night_id, epoch index); two bounded
   "bottom-k" samples keep the ``max_epochs`` epochs of smallest key: one of valid epochs (finite
   features) for the robust standardisation, one of valid PSG-scored epochs for the softmax and
   logistic regressions, stored as their raw features and those of their context neighbours so the
   model inputs can be built once the standardisation is known. Keys depend on the data only, so
   the same nights always give the same sample, whatever the stream's chunking. Counted exactly
   over all nights in the same pass: the stage prior, transition matrix, initial distribution,
   respiratory events and labelled epochs.
2. Calibration pass: the fitted model predicts every night, to calibrate
   ``events_per_flagged_epoch`` on all nights (as ``model.fit`` does) and to sum the in-sample
   confusion matrix.

With ``max_epochs`` at least the number of epochs, both samples hold every epoch, in stream order,
and the fit equals ``model._fit_params`` on the same nights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from sunalgo.agreement import N_STAGES, agreement_from_confusion, confusion_matrix
from sunalgo.features import FEATURE_NAMES
from sunalgo.labels import STAGES
from sunalgo.model import (
    CONTEXT_OFFSETS,
    SQUASH,
    _events_per_flagged_epoch,
    _fit_epoch_models,
    _flagged_sleep_epochs,
    _inputs,
    _jsonable,
    _params_dict,
    _robust_standardisation,
    _runs,
    _stage_chain,
    _stage_chain_counts,
    _stage_prior,
    model_from_params,
    predict,
)

# 200k epochs (~200 nights) pin ~320 parameters: more adds fit time, not accuracy. The raw context
# windows of the sample take max_epochs x 3 x 21 x 8 B (~100 MB at the default).
DEFAULT_MAX_EPOCHS = 200_000
_WINDOW_BATCH = 8192  # sampled epochs copied or turned into model inputs at a time
_KEY_SALT = b"sunalgo.warehouse_fit/1\x00"  # changing it changes every sample: never change it
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True, eq=False)
class TrainingNight:
    """One night of ``training_epochs``: row i is epoch i."""

    night_id: str  # sub-<pseudonym>_ses-<date>
    features: np.ndarray  # (n, n_features) float, FEATURE_NAMES order; NaN rows where no signal
    stages: np.ndarray  # (n,) int PSG stage codes, -1 unscored
    resp_mask: np.ndarray  # (n,) bool, the epoch overlaps an obstructive/mixed apnea or hypopnea
    event_count: float | None = None  # PSG respiratory events (apneas + hypopneas); None: unknown


def checked_night(night: TrainingNight) -> TrainingNight:
    """The night with float64 / int64 / bool arrays, or ValueError when the shapes disagree."""
    f = np.asarray(night.features, dtype=np.float64)
    s = np.asarray(night.stages, dtype=np.int64)
    m = np.asarray(night.resp_mask, dtype=bool)
    if f.ndim != 2 or f.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"night {night.night_id}: features must be (n, {len(FEATURE_NAMES)}), got {f.shape}")
    if s.shape != (f.shape[0],) or m.shape != (f.shape[0],):
        raise ValueError(f"night {night.night_id}: stages {s.shape} / resp_mask {m.shape} vs {f.shape[0]} epochs")
    if s.size and (s.min() < -1 or s.max() >= N_STAGES):
        raise ValueError(f"night {night.night_id}: stage codes must be -1 (unscored) or 0..{N_STAGES - 1}")
    count = None if night.event_count is None else float(night.event_count)
    return TrainingNight(night.night_id, f, s, m, count)


# --------------------------------------------------------------------------------------------
# Deterministic bounded sample of epochs


def epoch_keys(night_id: str, n_epochs: int) -> np.ndarray:
    """(n_epochs,) uint64 sampling keys: splitmix64 of a sha256 of the night id plus the epoch index.

    A pure function of (night_id, epoch index): the sample never depends on the order or chunking
    in which the warehouse returns nights.
    """
    night = np.uint64(int.from_bytes(hashlib.sha256(_KEY_SALT + night_id.encode("utf-8")).digest()[:8], "little"))
    z = night + np.arange(1, n_epochs + 1, dtype=np.uint64) * _GOLDEN  # uint64 arrays wrap, as intended
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


class EpochSample:
    """The (at most) ``max_epochs`` offered epochs of smallest key, with their rows ("bottom-k").

    Offered rows below the current k-th key are appended; when the pending rows exceed a quarter of
    ``max_epochs`` they are cut back to ``max_epochs``, one column at a time. The sample holds at
    most 1.25 x ``max_epochs`` rows (plus one night's), and one more column while cutting; later
    nights are mostly rejected by the key threshold before their rows are even built.
    """

    def __init__(self, max_epochs: int) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs!r}")
        self.max_epochs = int(max_epochs)
        self._slack = max(self.max_epochs // 4, 1)
        self._chunks: list[dict[str, np.ndarray]] = []
        self._size = 0
        self._threshold: np.uint64 | None = None  # k-th smallest key once k epochs were kept

    def offer(
        self,
        keys: np.ndarray,
        candidates: np.ndarray,
        night_ordinal: int,
        make_rows: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    ) -> None:
        """Offer a night's candidate epochs (bool mask); ``make_rows(epochs)`` builds their rows."""
        take = candidates if self._threshold is None else candidates & (keys < self._threshold)
        epochs = np.flatnonzero(take)
        if epochs.size == 0:
            return
        chunk = {"key": keys[epochs], "night": np.full(epochs.size, night_ordinal, dtype=np.int64), "epoch": epochs}
        chunk.update(make_rows(epochs))
        self._chunks.append(chunk)
        self._size += epochs.size
        if self._size > self.max_epochs + self._slack:
            self._compact()

    def _compact(self, stream_order: bool = False) -> None:
        """Cut the rows back to the ``max_epochs`` smallest keys (in stream order if asked)."""
        chunks, self._chunks = self._chunks, []
        key, night, epoch = (np.concatenate([c[name] for c in chunks]) for name in ("key", "night", "epoch"))
        # Ties of 64-bit keys are broken by (night, epoch), so the cut is a function of the data.
        keep = np.lexsort((epoch, night, key))[: self.max_epochs]
        if keep.size == self.max_epochs:
            self._threshold = key[keep[-1]]
        if stream_order:
            keep = keep[np.lexsort((epoch[keep], night[keep]))]
        self._chunks = [_gather(chunks, keep)]
        self._size = keep.size

    def rows(self) -> dict[str, np.ndarray]:
        """The sample in stream order (night, epoch); empty dict when nothing was offered."""
        if not self._chunks:
            return {}
        self._compact(stream_order=True)
        return self._chunks[0]


def _gather(chunks: list[dict[str, np.ndarray]], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``rows`` (indices into the chunks' concatenation) of every column, one new array per column.

    Each chunk's column is released once copied, so a large column (the context windows) never
    exists as a merged copy next to its pieces and its selection.
    """
    bounds = np.cumsum([0] + [c["key"].size for c in chunks])
    owner = np.searchsorted(bounds, rows, side="right") - 1
    by_owner = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[by_owner], np.arange(len(chunks) + 1))
    out = {}
    for name in list(chunks[0]):
        first = chunks[0][name]
        column = np.empty((rows.size, *first.shape[1:]), dtype=first.dtype)
        for i, chunk in enumerate(chunks):  # a loop over chunks (pieces of nights), not epochs
            source = chunk.pop(name)
            positions = by_owner[starts[i] : starts[i + 1]]
            for j in range(0, positions.size, _WINDOW_BATCH):  # batches: no full-size temporary copy
                part = positions[j : j + _WINDOW_BATCH]
                column[part] = source[rows[part] - bounds[i]]
        out[name] = column
    return out


# --------------------------------------------------------------------------------------------
# Model inputs of sampled epochs


def _window_offsets() -> np.ndarray:
    """Consecutive epoch offsets spanning every context offset and 0 (-1, 0, 1 by default)."""
    return np.arange(min(min(CONTEXT_OFFSETS), 0), max(max(CONTEXT_OFFSETS), 0) + 1)


def context_windows(features: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """(m, L, F) raw features of each epoch's window of neighbours; NaN rows beyond the night."""
    src = epochs[:, None] + _window_offsets()[None, :]
    inside = (src >= 0) & (src < features.shape[0])
    rows = features[np.clip(src, 0, max(features.shape[0] - 1, 0))]
    return np.where(inside[:, :, None], rows, np.nan)


def window_inputs(windows: np.ndarray, center: np.ndarray, scale: np.ndarray, batch: int = _WINDOW_BATCH) -> np.ndarray:
    """(m, n_inputs) model inputs of the windows' centre epochs, through ``model._inputs`` itself.

    Each window is treated as a tiny night; the centre's context neighbours all lie inside its own
    window, and a neighbour without signal (NaN, or beyond the real night) falls back to the centre
    exactly as in ``predict``. Batches of windows bound the temporaries (``_inputs`` builds the
    context of every window row, L times the rows kept).
    """
    m, length, n_features = windows.shape
    centre = int(np.flatnonzero(_window_offsets() == 0)[0])
    x = np.empty((m, n_features * len(CONTEXT_OFFSETS)))
    for start in range(0, m, batch):  # a few batches of thousands of epochs each
        part = windows[start : start + batch]
        rows, _ = _inputs(part.reshape(-1, n_features), center, scale, SQUASH, CONTEXT_OFFSETS)
        x[start : start + part.shape[0]] = rows.reshape(part.shape[0], length, -1)[:, centre]
    return x


# --------------------------------------------------------------------------------------------
# Exact totals over all nights


@dataclass
class StreamTotals:
    """Counts over every streamed night (they add up, so no night is kept)."""

    n_nights: int = 0
    n_epochs: int = 0
    stage_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_STAGES, dtype=np.int64))
    transition_counts: np.ndarray = field(default_factory=lambda: np.zeros((N_STAGES, N_STAGES)))
    initial_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_STAGES))
    resp_positive_epochs: int = 0  # flagged among valid scored epochs (the fitted rows)
    resp_labelled_epochs: int = 0  # flagged among all epochs (model.fit's calibration fallback)
    respiratory_events: float = 0.0
    digest: Any = field(default_factory=hashlib.sha256)  # of the night ids: the stream must not change

    def add(self, night: TrainingNight, fitted_rows: np.ndarray) -> None:
        self.n_nights += 1
        self.n_epochs += night.stages.size
        self.stage_counts += np.bincount(night.stages[fitted_rows], minlength=N_STAGES)
        trans, initial = _stage_chain_counts(night.stages)
        self.transition_counts += trans
        self.initial_counts += initial
        self.resp_positive_epochs += int(np.count_nonzero(night.resp_mask & fitted_rows))
        self.resp_labelled_epochs += int(np.count_nonzero(night.resp_mask))
        # As model.fit: the night's own count when known, else the runs of its mask.
        self.respiratory_events += night.event_count if night.event_count is not None else float(_runs(night.resp_mask))
        self.digest.update(night.night_id.encode("utf-8") + b"\x00" + str(night.stages.size).encode() + b"\n")


def _ordered_nights(read_nights: Callable[[], Iterable[TrainingNight]]) -> Iterable[TrainingNight]:
    """One stream of checked nights; ValueError unless night ids strictly increase (sorted, unique)."""
    previous: str | None = None
    for night in read_nights():
        night = checked_night(night)
        if previous is not None and not night.night_id > previous:
            raise ValueError(f"nights must stream in increasing night_id order: {night.night_id} after {previous}")
        previous = night.night_id
        yield night


def _standardisation_rows(night: TrainingNight, epochs: np.ndarray) -> dict[str, np.ndarray]:
    return {"features": night.features[epochs]}


def _fit_rows(night: TrainingNight, epochs: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "window": context_windows(night.features, epochs),
        "stage": night.stages[epochs],
        "resp": night.resp_mask[epochs],
    }


def _sampling_pass(
    read_nights: Callable[[], Iterable[TrainingNight]], max_epochs: int
) -> tuple[StreamTotals, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Exact totals plus the standardisation and fit samples, in one stream of the nights."""
    totals = StreamTotals()
    standardisation = EpochSample(max_epochs)
    fit = EpochSample(max_epochs)
    for ordinal, night in enumerate(_ordered_nights(read_nights)):  # a loop over nights, not epochs
        keys = epoch_keys(night.night_id, night.stages.size)
        valid = np.isfinite(night.features).all(axis=1)
        fitted_rows = valid & (night.stages >= 0)
        standardisation.offer(keys, valid, ordinal, partial(_standardisation_rows, night))
        fit.offer(keys, fitted_rows, ordinal, partial(_fit_rows, night))
        totals.add(night, fitted_rows)
    if totals.n_nights == 0:
        raise ValueError("read_nights() yielded no night")
    return totals, standardisation.rows(), fit.rows()


def _fit_sampled(
    read_nights: Callable[[], Iterable[TrainingNight]], max_epochs: int, l2: float
) -> tuple[dict[str, Any], dict[str, Any], StreamTotals]:
    """Params before the event calibration, the fit's diagnostics and the exact totals.

    The samples live only in this function, so they are freed before the calibration pass.
    """
    totals, std_sample, fit_sample = _sampling_pass(read_nights, max_epochs)
    if not std_sample:
        raise ValueError("no epoch with finite features to fit on")
    if not fit_sample:
        raise ValueError("no scored epoch with finite features to fit on")
    center, scale = _robust_standardisation(std_sample["features"])
    x = window_inputs(fit_sample.pop("window"), center, scale)  # the windows are freed before the fit
    fitted = _fit_epoch_models(x, fit_sample["stage"], fit_sample["resp"], l2)
    trans, initial = _stage_chain(totals.transition_counts, totals.initial_counts)
    params = _params_dict(center, scale, fitted, _stage_prior(totals.stage_counts), trans, initial)
    diagnostics = {
        "converged": fitted["converged"],
        "resp_f1_in_sample": fitted["resp_f1"],
        "fit_sample_epochs": int(x.shape[0]),
        "standardisation_sample_epochs": int(std_sample["features"].shape[0]),
    }
    return params, diagnostics, totals


def _calibration_pass(
    read_nights: Callable[[], Iterable[TrainingNight]], params: Mapping[str, Any], totals: StreamTotals
) -> tuple[int, np.ndarray]:
    """Flagged sleep epochs and the PSG-vs-predicted confusion matrix, summed over every night."""
    model = model_from_params(_jsonable(params))
    flagged = 0
    confusion = np.zeros((N_STAGES, N_STAGES), dtype=np.int64)
    digest, n_nights = hashlib.sha256(), 0
    for night in _ordered_nights(read_nights):
        pred = predict(night.features, model)
        flagged += _flagged_sleep_epochs(pred)
        confusion += confusion_matrix(night.stages, pred.stage)
        digest.update(night.night_id.encode("utf-8") + b"\x00" + str(night.stages.size).encode() + b"\n")
        n_nights += 1
    if n_nights != totals.n_nights or digest.digest() != totals.digest.digest():
        raise ValueError("read_nights() streamed other nights on its second call: the warehouse changed mid-fit")
    return flagged, confusion


def fit_streamed(
    read_nights: Callable[[], Iterable[TrainingNight]],
    *,
    max_epochs: int = DEFAULT_MAX_EPOCHS,
    l2: float = 1e-2,
    training: Mapping[str, Any] | None = None,
) -> dict:
    """Fit the stage and respiratory-event models on streamed nights; returns JSON-ready params.

    ``read_nights()`` is called twice and must yield the same nights in increasing night_id order
    each time (Python string order: in SQL, ``ORDER BY night_id COLLATE "C"``). The regressions are
    fitted on a deterministic sample of at most ``max_epochs`` valid scored epochs (and the
    standardisation on one of at most ``max_epochs`` valid epochs); the stage prior, transitions,
    initial distribution and event calibration use every night. No held-out
    split here: split by subject upstream (:mod:`sunalgo.subject_split`) and report the held-out
    metrics with :mod:`sunalgo.model_card`. ``training`` is copied into the params' ``training``.
    """
    if not (l2 >= 0 and np.isfinite(l2)):
        raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
    params, diag, totals = _fit_sampled(read_nights, max_epochs, l2)
    flagged, confusion = _calibration_pass(read_nights, params, totals)
    params["respiratory_model"]["events_per_flagged_epoch"] = _events_per_flagged_epoch(
        totals.respiratory_events, flagged, totals.resp_labelled_epochs
    )
    in_sample = agreement_from_confusion(confusion)
    params["fit"] = {
        "method": "streamed",
        "l2": l2,
        "max_epochs": int(max_epochs),
        "fit_sample_epochs": diag["fit_sample_epochs"],
        "standardisation_sample_epochs": diag["standardisation_sample_epochs"],
        "converged": diag["converged"],
        "held_out_nights": 0,
    }
    params["metrics"] = {
        "stage_accuracy_in_sample": in_sample["accuracy"],
        "stage_kappa_in_sample": in_sample["kappa_5class"],
        "stage_accuracy_held_out": None,
        "stage_kappa_held_out": None,
        "held_out_epochs": 0,
        "resp_f1_in_sample": diag["resp_f1_in_sample"],  # on the fit sample
    }
    params["training"] = {
        **dict(training or {}),
        "n_nights": totals.n_nights,
        "n_epochs": totals.n_epochs,
        "n_epochs_fitted": diag["fit_sample_epochs"],
        "stage_epochs": dict(zip(STAGES, totals.stage_counts.tolist())),
        "resp_positive_epochs": totals.resp_positive_epochs,
        "respiratory_events": totals.respiratory_events,
    }
    return _jsonable(params)
