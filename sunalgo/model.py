"""Sleep-stage and respiratory-event predictions from epoch features.

Model (parameters in the versioned data file ``sunalgo/model_params/params.json``):

1. Robust standardisation of each feature (median, IQR/1.349), softly clipped with
   ``s * tanh(z / s)`` so a huge movement burst cannot dominate a linear model.
2. Temporal context: the inputs of epoch t are the standardised features of epochs t-1, t, t+1
   (a neighbour without signal, or beyond the night, is replaced by epoch t itself).
3. Stages: multinomial logistic regression (softmax, L2 penalty, L-BFGS) on those inputs, then an
   HMM forward-backward pass: the softmax posteriors divided by the training stage priors act as
   emission likelihoods, the stage transition matrix and initial distribution are counted from the
   training hypnograms. Stages are sticky; the smoothing removes implausible one-epoch flips. The
   prediction is the stage of highest posterior; ``proba`` holds the smoothed posteriors.
4. Respiratory events: binary logistic regression on the same inputs for "the epoch overlaps an
   obstructive/mixed apnea or hypopnea"; the flag threshold maximises F1 on the training epochs
   and ``events_per_flagged_epoch`` (training events / flagged sleep epochs) turns flagged sleep
   epochs into an event-count estimate for the AHI.

The forward-backward pass is an associative scan (log2(n) batched 5x5 matrix products), so there is
no Python loop over epochs anywhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sunalgo
from sunalgo.agreement import epoch_agreement
from sunalgo.features import FEATURE_NAMES
from sunalgo.labels import STAGES

MODEL_FORMAT = "sunalgo-stage-model/1"
DEFAULT_PARAMS_PATH = Path(__file__).resolve().parent / "model_params" / "params.json"
CONTEXT_OFFSETS: tuple[int, ...] = (-1, 0, 1)
SQUASH = 4.0  # standardised values are softly limited to +-4
N_STAGES = len(STAGES)
_PROB_FLOOR = 1e-9  # keeps every stage reachable in the HMM, and logs finite
_FLOAT_DIGITS = 8  # significant digits written to params.json


@dataclass(frozen=True, eq=False)
class Predictions:
    stage: np.ndarray  # (n,) int8, -1 where the epoch has no signal
    proba: np.ndarray  # (n, 5) float64 posteriors in labels.STAGES order, NaN rows where no signal
    resp_event_prob: np.ndarray  # (n,) float64, NaN where no signal
    resp_event: np.ndarray  # (n,) bool, False where no signal
    estimated_events: float  # respiratory events estimated over predicted sleep; NaN without signal


@dataclass(frozen=True, eq=False)
class StageModel:
    feature_names: tuple[str, ...]
    context_offsets: tuple[int, ...]
    center: np.ndarray  # (n_features,)
    scale: np.ndarray  # (n_features,)
    squash: float
    stage_weights: np.ndarray  # (n_inputs, 5)
    stage_bias: np.ndarray  # (5,)
    stage_prior: np.ndarray  # (5,)
    transition: np.ndarray  # (5, 5), row = from, column = to
    initial: np.ndarray  # (5,)
    resp_weights: np.ndarray  # (n_inputs,)
    resp_bias: float
    resp_threshold: float
    events_per_flagged_epoch: float
    sunalgo_version: str  # version that fitted the parameters
    training: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Inputs


def _standardise(x: np.ndarray, center: np.ndarray, scale: np.ndarray, squash: float) -> np.ndarray:
    z = (x - center) / scale
    return squash * np.tanh(z / squash)


def _context(z: np.ndarray, valid: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """Stack rows of z at the given epoch offsets; a missing neighbour falls back to the epoch itself."""
    n = z.shape[0]
    idx = np.arange(n)
    blocks = []
    for off in offsets:  # a few offsets, not epochs
        src = idx + off
        ok = (src >= 0) & (src < n)
        ok[ok] &= valid[src[ok]]
        blocks.append(z[np.where(ok, src, idx)])
    return np.concatenate(blocks, axis=1)


def _inputs(
    features: np.ndarray, center: np.ndarray, scale: np.ndarray, squash: float, offsets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(features).all(axis=1)
    z = np.zeros_like(features)
    z[valid] = _standardise(features[valid], center, scale, squash)
    return _context(z, valid, offsets), valid


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


# --------------------------------------------------------------------------------------------
# HMM smoothing


def _scan(mats: np.ndarray, reverse: bool) -> np.ndarray:
    """Inclusive prefix (or suffix) products of (L, K, K) matrices, renormalised (Hillis-Steele)."""
    out = mats.copy()
    step = 1
    while step < out.shape[0]:  # log2(L) rounds, each one batched matmul
        prod = out[:-step] @ out[step:]  # pairs (j, j + step)
        if reverse:
            out[:-step] = prod  # suffix: M_j ... M_{j + 2 step - 1}
        else:
            out[step:] = prod  # prefix: M_{j + step - 2 step + 1} ... M_{j + step}
        # Only ratios matter: rescale so long products neither underflow nor overflow.
        out /= out.sum(axis=(1, 2), keepdims=True)
        step *= 2
    return out


def smooth_posteriors(emission: np.ndarray, transition: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """HMM forward-backward posteriors (n, K) for emission likelihoods (n, K)."""
    n, k = emission.shape
    if n == 0:
        return emission.copy()
    alpha0 = initial * emission[0]
    if n == 1:
        return alpha0[None, :] / alpha0.sum()
    # alpha_t = alpha_0 M_1 ... M_t and beta_t = M_{t+1} ... M_{n-1} 1, with M_t = A diag(e_t).
    m = transition[None, :, :] * emission[1:, None, :]
    prefix = _scan(m, reverse=False)
    suffix = _scan(m, reverse=True)
    alpha = np.empty((n, k))
    alpha[0] = alpha0
    alpha[1:] = np.einsum("k,tkj->tj", alpha0, prefix)
    beta = np.ones((n, k))
    beta[:-1] = suffix.sum(axis=2)
    post = alpha * beta
    total = post.sum(axis=1, keepdims=True)
    # Guard: an all-zero row (cannot happen with floored emissions) falls back to the emission.
    bad = ~(total[:, 0] > 0)
    post[bad] = emission[bad]
    total[bad] = emission[bad].sum(axis=1, keepdims=True)
    return post / total


# --------------------------------------------------------------------------------------------
# Loading and predicting

_CACHE: dict[tuple[str, int, int], StageModel] = {}


def _array(obj: Any, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    arr = np.asarray(obj, dtype=np.float64)
    if arr.shape != shape or not np.isfinite(arr).all():
        raise ValueError(f"{path}: {what} must be finite with shape {shape}, got {arr.shape}")
    return arr


def model_from_params(params: Mapping[str, Any], path: Path | str = "<params>") -> StageModel:
    """Build a StageModel from a params dict as written by :func:`fit` / :func:`save_model`."""
    path = Path(path)
    try:
        if params.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path}: format {params.get('format')!r}, expected {MODEL_FORMAT!r}")
        names = tuple(params["feature_names"])
        offsets = tuple(int(o) for o in params["context_offsets"])
        std, stage, resp = params["standardisation"], params["stage_model"], params["respiratory_model"]
        f = len(names)
        d = f * len(offsets)
        return StageModel(
            feature_names=names,
            context_offsets=offsets,
            center=_array(std["center"], (f,), "standardisation.center", path),
            scale=_array(std["scale"], (f,), "standardisation.scale", path),
            squash=float(std["squash"]),
            stage_weights=_array(stage["weights"], (d, N_STAGES), "stage_model.weights", path),
            stage_bias=_array(stage["bias"], (N_STAGES,), "stage_model.bias", path),
            stage_prior=_array(stage["prior"], (N_STAGES,), "stage_model.prior", path),
            transition=_array(stage["transition"], (N_STAGES, N_STAGES), "stage_model.transition", path),
            initial=_array(stage["initial"], (N_STAGES,), "stage_model.initial", path),
            resp_weights=_array(resp["weights"], (d,), "respiratory_model.weights", path),
            resp_bias=float(resp["bias"]),
            resp_threshold=float(resp["threshold"]),
            events_per_flagged_epoch=float(resp["events_per_flagged_epoch"]),
            sunalgo_version=str(params["sunalgo_version"]),
            training=dict(params.get("training", {})),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed model parameters ({exc!r})") from exc


def load_model(path: Path | None = None) -> StageModel:
    """Load model parameters (default: ``sunalgo/model_params/params.json``); cached until the file changes."""
    path = Path(path) if path is not None else DEFAULT_PARAMS_PATH
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ValueError(f"model parameters not found: {path}") from exc
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    model = _CACHE.get(key)
    if model is None:
        try:
            params = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        model = model_from_params(params, path)
        _CACHE[key] = model
    return model


def predict(features: np.ndarray, model: StageModel | None = None) -> Predictions:
    """Stage and respiratory-event predictions for one night's (n_epochs, n_features) matrix.

    Rows with any NaN (no signal) get stage -1, NaN probabilities and no event flag.
    Raises ValueError when the model was fitted for other features than ``FEATURE_NAMES``.
    """
    model = load_model() if model is None else model
    if tuple(model.feature_names) != FEATURE_NAMES:
        raise ValueError(
            "model parameters were fitted for features "
            f"{list(model.feature_names)} but sunalgo computes {list(FEATURE_NAMES)}: refit the model"
        )
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"features must have shape (n_epochs, {len(FEATURE_NAMES)}), got {x.shape}")
    inputs, valid = _inputs(x, model.center, model.scale, model.squash, model.context_offsets)

    proba_raw = _softmax(inputs @ model.stage_weights + model.stage_bias)
    emission = np.maximum(proba_raw, _PROB_FLOOR) / model.stage_prior
    emission[~valid] = 1.0  # no evidence: the HMM carries the neighbours through the gap
    post = smooth_posteriors(emission, model.transition, model.initial)
    stage = np.where(valid, np.argmax(post, axis=1), -1).astype(np.int8)
    proba = np.where(valid[:, None], post, np.nan)

    resp_prob = np.where(valid, _sigmoid(inputs @ model.resp_weights + model.resp_bias), np.nan)
    resp_event = valid & (np.nan_to_num(resp_prob, nan=0.0) >= model.resp_threshold)
    flagged_sleep = int(np.count_nonzero(resp_event & (stage > 0)))
    estimated = flagged_sleep * model.events_per_flagged_epoch if valid.any() else float("nan")
    return Predictions(
        stage=stage,
        proba=proba,
        resp_event_prob=resp_prob,
        resp_event=resp_event,
        estimated_events=float(estimated),
    )


# --------------------------------------------------------------------------------------------
# Fitting


def _fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float) -> tuple[np.ndarray, np.ndarray, bool]:
    """Multinomial logistic regression: mean cross-entropy + l2 * ||W||^2 (bias not penalised)."""
    n, d = x.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes :]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_p = logits - log_z
        loss = -np.sum(onehot * log_p) / n + l2 * np.sum(w * w)
        g = (np.exp(log_p) - onehot) / n
        grad_w = x.T @ g + 2.0 * l2 * w
        return float(loss), np.concatenate([grad_w.ravel(), g.sum(axis=0)])

    from scipy.optimize import minimize  # only fitting needs it (~0.4 s to import): not loading a model

    res = minimize(
        objective, np.zeros(d * n_classes + n_classes), jac=True, method="L-BFGS-B", options={"maxiter": 2000}
    )
    return res.x[: d * n_classes].reshape(d, n_classes), res.x[d * n_classes :], bool(res.success)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float, bool]:
    """Binary logistic regression: mean log-loss + l2 * ||w||^2 (bias not penalised)."""
    n, d = x.shape
    t = y.astype(np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        s = x @ w + b
        # log(1 + e^s) - t*s, computed stably.
        loss = np.sum(np.logaddexp(0.0, s) - t * s) / n + l2 * np.dot(w, w)
        g = (_sigmoid(s) - t) / n
        return float(loss), np.concatenate([x.T @ g + 2.0 * l2 * w, [g.sum()]])

    from scipy.optimize import minimize  # only fitting needs it (~0.4 s to import): not loading a model

    res = minimize(objective, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x[:d], float(res.x[d]), bool(res.success)


def _best_f1_threshold(prob: np.ndarray, truth: np.ndarray) -> tuple[float, float | None]:
    """Flag threshold maximising F1 on a grid of 0.05..0.95 (vectorised over the grid)."""
    if not truth.any():
        return 0.5, None
    grid = np.round(np.linspace(0.05, 0.95, 91), 2)
    flagged = prob[:, None] >= grid[None, :]
    tp = np.count_nonzero(flagged & truth[:, None], axis=0)
    f1 = 2 * tp / (flagged.sum(axis=0) + truth.sum())
    best = int(np.argmax(f1))
    return float(grid[best]), float(f1[best])


def _runs(mask: np.ndarray) -> int:
    """Number of contiguous True runs (events, when no count is given)."""
    m = np.asarray(mask, dtype=bool)
    return int(np.count_nonzero(m[1:] & ~m[:-1]) + (1 if m.size and m[0] else 0))


def _robust_standardisation(pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature median and IQR/1.349 of valid epochs' features (the SD, then 1, where the IQR is 0)."""
    center = np.median(pooled, axis=0)
    q75, q25 = np.percentile(pooled, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = pooled.std(axis=0)
    return center, np.where(scale > 1e-12, scale, np.where(std > 1e-12, std, 1.0))


def _stage_chain_counts(stages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One night's (5, 5) counts of transitions between consecutive PSG-scored epochs, and the
    one-hot (5,) of its first scored stage. Counts add up over nights, so they can be streamed."""
    s = np.asarray(stages, dtype=np.int64)
    pair = (s[:-1] >= 0) & (s[1:] >= 0)
    codes = s[:-1][pair] * N_STAGES + s[1:][pair]
    trans = np.bincount(codes, minlength=N_STAGES * N_STAGES).reshape(N_STAGES, N_STAGES).astype(np.float64)
    initial = np.zeros(N_STAGES)
    scored = s[s >= 0]
    if scored.size:
        initial[scored[0]] = 1.0
    return trans, initial


def _stage_chain(trans_counts: np.ndarray, initial_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transition matrix and initial distribution from summed counts, Laplace-smoothed so no
    transition is impossible."""
    trans = trans_counts + 1.0
    initial = initial_counts + 1.0
    return trans / trans.sum(axis=1, keepdims=True), initial / initial.sum()


def _stage_prior(stage_counts: np.ndarray) -> np.ndarray:
    return (stage_counts + 1.0) / (stage_counts.sum() + N_STAGES)


def _fit_epoch_models(x: np.ndarray, y: np.ndarray, resp: np.ndarray, l2: float) -> dict[str, Any]:
    """Stage softmax and respiratory logistic regression on model inputs x of scored epochs."""
    w, b, ok_stage = _fit_softmax(x, y, N_STAGES, l2)
    rw, rb, ok_resp = _fit_logistic(x, resp, l2)
    threshold, f1 = _best_f1_threshold(_sigmoid(x @ rw + rb), resp)
    return {
        "stage_weights": w,
        "stage_bias": b,
        "resp_weights": rw,
        "resp_bias": rb,
        "resp_threshold": threshold,
        "resp_f1": f1,
        "converged": bool(ok_stage and ok_resp),
    }


def _params_dict(
    center: np.ndarray,
    scale: np.ndarray,
    fitted: Mapping[str, Any],
    prior: np.ndarray,
    trans: np.ndarray,
    initial: np.ndarray,
) -> dict[str, Any]:
    """Params in the params.json layout, before the event calibration (events_per_flagged_epoch 0)."""
    return {
        "format": MODEL_FORMAT,
        "feature_names": list(FEATURE_NAMES),
        "stages": list(STAGES),
        "context_offsets": list(CONTEXT_OFFSETS),
        "standardisation": {"center": center, "scale": scale, "squash": SQUASH},
        "stage_model": {
            "weights": fitted["stage_weights"],
            "bias": fitted["stage_bias"],
            "prior": prior,
            "transition": trans,
            "initial": initial,
        },
        "respiratory_model": {
            "weights": fitted["resp_weights"],
            "bias": fitted["resp_bias"],
            "threshold": fitted["resp_threshold"],
            "events_per_flagged_epoch": 0.0,
        },
        "sunalgo_version": sunalgo.__version__,
    }


def _flagged_sleep_epochs(pred: Predictions) -> int:
    """Epochs the respiratory model flags inside predicted sleep (what events_per_flagged_epoch scales)."""
    return int(np.count_nonzero(pred.resp_event & (pred.stage > 0)))


def _events_per_flagged_epoch(total_events: float, flagged: int, labelled_epochs: int) -> float:
    if flagged:
        return total_events / flagged
    return total_events / max(labelled_epochs, 1)  # nothing flagged in training: events per labelled epoch


def _fit_params(
    features: Sequence[np.ndarray],
    stages: Sequence[np.ndarray],
    resp_masks: Sequence[np.ndarray],
    event_counts: Sequence[float],
    l2: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit on the given nights; returns (params without provenance, fit diagnostics)."""
    valid_rows = np.concatenate([np.isfinite(f).all(axis=1) for f in features])
    pooled = np.concatenate(features)[valid_rows]
    if pooled.shape[0] == 0:
        raise ValueError("no epoch with finite features to fit on")
    center, scale = _robust_standardisation(pooled)

    inputs, valids = [], []
    for f in features:
        z, v = _inputs(f, center, scale, SQUASH, CONTEXT_OFFSETS)
        inputs.append(z)
        valids.append(v)
    x_all = np.concatenate(inputs)
    v_all = np.concatenate(valids)
    s_all = np.concatenate(stages).astype(np.int64)
    r_all = np.concatenate(resp_masks).astype(bool)
    rows = v_all & (s_all >= 0)
    if not rows.any():
        raise ValueError("no scored epoch with finite features to fit on")
    x, y = x_all[rows], s_all[rows]

    fitted = _fit_epoch_models(x, y, r_all[rows], l2)
    stage_counts = np.bincount(y, minlength=N_STAGES)
    chains = [_stage_chain_counts(s) for s in stages]  # a loop over nights, not epochs
    trans, initial = _stage_chain(sum(c[0] for c in chains), sum(c[1] for c in chains))
    params = _params_dict(center, scale, fitted, _stage_prior(stage_counts), trans, initial)

    # Calibrate the event count on the model's own flags in predicted sleep.
    model = model_from_params(_jsonable(params))
    flagged = sum(_flagged_sleep_epochs(predict(f, model)) for f in features)
    total_events = float(np.sum(event_counts))
    per_flag = _events_per_flagged_epoch(total_events, flagged, int(r_all.sum()))
    params["respiratory_model"]["events_per_flagged_epoch"] = per_flag
    diagnostics = {
        "converged": fitted["converged"],
        "resp_f1_in_sample": fitted["resp_f1"],
        "stage_counts": stage_counts,
        "n_epochs_fitted": int(rows.sum()),
        "resp_positive_epochs": int(r_all[rows].sum()),
        "respiratory_events": total_events,
    }
    return params, diagnostics


def _stage_metrics(params: Mapping[str, Any], features: Sequence[np.ndarray], stages: Sequence[np.ndarray]) -> dict:
    model = model_from_params(_jsonable(params))
    pred = np.concatenate([predict(f, model).stage for f in features])
    ref = np.concatenate([np.asarray(s) for s in stages])
    agreement = epoch_agreement(ref, pred)
    return {"accuracy": agreement["accuracy"], "kappa": agreement["kappa_5class"], "n_epochs": agreement["n_epochs"]}


def fit(
    features: Sequence[np.ndarray],
    stages: Sequence[np.ndarray],
    resp_masks: Sequence[np.ndarray],
    *,
    l2: float = 1e-2,
    seed: int = 0,
    training: Mapping[str, Any] | None = None,
    event_counts: Sequence[float] | None = None,
) -> dict:
    """Fit the stage and respiratory-event models on training nights; returns JSON-ready params.

    One entry per night: features (n_i, n_features), PSG stages (n_i,) int with -1 unscored, and
    the per-epoch obstructive/mixed/hypopnea overlap mask (n_i,) bool. ``event_counts`` are the
    nights' respiratory event counts (default: the number of runs in each mask) used to calibrate
    ``events_per_flagged_epoch``. ``training`` is copied into the params' ``training`` block.
    With 2+ nights, a seeded ~20% of the nights is held out to report held-out stage accuracy and
    kappa, then the final model is refitted on all nights.
    """
    features = [np.asarray(f, dtype=np.float64) for f in features]
    stages = [np.asarray(s, dtype=np.int64) for s in stages]
    resp_masks = [np.asarray(m, dtype=bool) for m in resp_masks]
    if not features or not (len(features) == len(stages) == len(resp_masks)):
        raise ValueError("need the same non-zero number of nights of features, stages and resp_masks")
    for i, (f, s, m) in enumerate(zip(features, stages, resp_masks)):
        if f.ndim != 2 or f.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"night {i}: features must be (n, {len(FEATURE_NAMES)}), got {f.shape}")
        if s.shape != (f.shape[0],) or m.shape != (f.shape[0],):
            raise ValueError(f"night {i}: stages {s.shape} / resp_mask {m.shape} do not match {f.shape[0]} epochs")
    if not (l2 >= 0 and np.isfinite(l2)):
        raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
    counts = [float(_runs(m)) for m in resp_masks] if event_counts is None else [float(c) for c in event_counts]
    if len(counts) != len(features):
        raise ValueError("event_counts must have one count per night")

    n_nights = len(features)
    held_out: dict[str, Any] = {"accuracy": None, "kappa": None, "n_epochs": 0}
    n_hold = n_nights // 5 if n_nights >= 5 else (1 if n_nights >= 2 else 0)
    if n_hold:
        order = np.random.default_rng(seed).permutation(n_nights)
        hold, train = sorted(order[:n_hold].tolist()), sorted(order[n_hold:].tolist())
        split_params, _ = _fit_params(
            [features[i] for i in train],
            [stages[i] for i in train],
            [resp_masks[i] for i in train],
            [counts[i] for i in train],
            l2,
        )
        held_out = _stage_metrics(split_params, [features[i] for i in hold], [stages[i] for i in hold])

    params, diag = _fit_params(features, stages, resp_masks, counts, l2)
    in_sample = _stage_metrics(params, features, stages)
    params["fit"] = {"l2": l2, "seed": seed, "converged": diag["converged"], "held_out_nights": n_hold}
    params["metrics"] = {
        "stage_accuracy_in_sample": in_sample["accuracy"],
        "stage_kappa_in_sample": in_sample["kappa"],
        "stage_accuracy_held_out": held_out["accuracy"],
        "stage_kappa_held_out": held_out["kappa"],
        "held_out_epochs": held_out["n_epochs"],
        "resp_f1_in_sample": diag["resp_f1_in_sample"],
    }
    params["training"] = {
        **dict(training or {}),
        "n_nights": n_nights,
        "n_epochs_fitted": diag["n_epochs_fitted"],
        "stage_epochs": dict(zip(STAGES, diag["stage_counts"].tolist())),
        "resp_positive_epochs": diag["resp_positive_epochs"],
        "respiratory_events": diag["respiratory_events"],
    }
    return _jsonable(params)


# --------------------------------------------------------------------------------------------
# Saving


def _jsonable(obj: Any) -> Any:
    """Plain JSON types with floats rounded to a fixed number of significant digits.

    Rounding makes the file byte-identical across refits even if the last bits of a BLAS sum differ.
    """
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        if not np.isfinite(x):
            return None
        x = float(f"{x:.{_FLOAT_DIGITS}g}")
        return 0.0 if x == 0 else x  # no "-0.0"
    return obj


def params_json(params: Mapping[str, Any]) -> str:
    """The canonical text of a parameter set (sorted keys, fixed float precision): the same
    parameters always give the same bytes, so a hash of them can name the model."""
    return json.dumps(_jsonable(params), sort_keys=True, indent=1, allow_nan=False) + "\n"


def save_model(params: dict, path: Path) -> None:
    """Write params as JSON deterministically (sorted keys, fixed float precision), atomically."""
    path = Path(path)
    text = params_json(params)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other users of a shared tree
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
