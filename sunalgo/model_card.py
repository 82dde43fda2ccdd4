"""A model card's held-out metrics: how a model's hypnograms and clinical scores agree with PSG.

Each held-out night becomes a small :class:`NightRecord` (its 5x5 confusion matrix against the PSG
and five clinical scores of both hypnograms), so nights stream by one at a time and no hypnogram
is concatenated: epoch metrics come from the sum of the nights' confusion matrices, score
agreement from the per-night score pairs. The same records feed :mod:`sunalgo.comparison`.

Predicted scores are :func:`sunalgo.scores.clinical_scores` of the predicted hypnogram with the
model's estimated respiratory events; PSG scores are those of the PSG hypnogram with the PSG event
count (a night whose count is unknown has no PSG AHI and is left out of the AHI agreement only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sunalgo.agreement import N_STAGES, agreement_from_confusion, bland_altman, confusion_matrix
from sunalgo.labels import STAGES
from sunalgo.model import StageModel, model_from_params, predict
from sunalgo.scores import clinical_scores
from sunalgo.subject_split import subject_of
from sunalgo.warehouse_fit import TrainingNight, checked_night

# Scores kept per night (the comparison uses all five, the card the first two and AHI).
RECORD_SCORES: tuple[str, ...] = (
    "total_sleep_time_min",
    "sleep_efficiency_pct",
    "sleep_onset_latency_min",
    "waso_min",
    "ahi",
)
CARD_SCORES: tuple[str, ...] = ("total_sleep_time_min", "sleep_efficiency_pct", "ahi")
SCORE_LABELS: dict[str, str] = {
    "total_sleep_time_min": "TST (min)",
    "sleep_efficiency_pct": "SE (%)",
    "sleep_onset_latency_min": "SOL (min)",
    "waso_min": "WASO (min)",
    "ahi": "AHI (events/h)",
}


@dataclass(frozen=True, eq=False)
class NightRecord:
    """What the card and the comparison need of one night scored by one model."""

    night_id: str
    subject: str
    predicted: Mapping[str, float | None]  # RECORD_SCORES of the predicted hypnogram
    psg: Mapping[str, float | None]  # RECORD_SCORES of the PSG hypnogram
    confusion: np.ndarray  # (5, 5) int64 epoch counts, rows PSG stage, columns predicted stage


def record_from_hypnograms(
    night_id: str,
    psg_stages: np.ndarray,
    psg_events: float | None,
    predicted_stages: np.ndarray,
    predicted_events: float | None,
) -> NightRecord:
    """A night's record from its PSG and predicted hypnograms and respiratory event counts."""

    def kept(scores: Mapping[str, float | None]) -> dict[str, float | None]:
        return {name: scores[name] for name in RECORD_SCORES}

    return NightRecord(
        night_id=night_id,
        subject=subject_of(night_id),
        predicted=kept(clinical_scores(predicted_stages, respiratory_events=predicted_events)),
        psg=kept(clinical_scores(psg_stages, respiratory_events=psg_events)),
        confusion=confusion_matrix(psg_stages, predicted_stages),
    )


def night_record(model: StageModel, night: TrainingNight) -> NightRecord:
    """Predict one night with ``model`` and score it against its PSG."""
    night = checked_night(night)
    pred = predict(night.features, model)
    return record_from_hypnograms(night.night_id, night.stages, night.event_count, pred.stage, pred.estimated_events)


def stage_f1(confusion: np.ndarray) -> dict[str, float | None]:
    """Per-stage F1 = 2 TP / (PSG epochs of the stage + predicted epochs of it); None when both are 0."""
    cm = np.asarray(confusion, dtype=np.int64)
    denominator = cm.sum(axis=1) + cm.sum(axis=0)
    return {stage: (float(2 * cm[k, k] / denominator[k]) if denominator[k] else None) for k, stage in enumerate(STAGES)}


def _score_column(scores: list[Mapping[str, float | None]], score: str) -> np.ndarray:
    return np.array([np.nan if night[score] is None else night[score] for night in scores], dtype=np.float64)


def card_from_records(records: Iterable[NightRecord]) -> dict[str, Any]:
    """Held-out metrics from night records, streamed: a running 5x5 sum and the nights' scores."""
    confusion = np.zeros((N_STAGES, N_STAGES), dtype=np.int64)
    subjects: set[str] = set()
    predicted: list[Mapping[str, float | None]] = []
    psg: list[Mapping[str, float | None]] = []
    for record in records:  # a loop over nights; each keeps a few numbers
        confusion += record.confusion
        subjects.add(record.subject)
        predicted.append(record.predicted)
        psg.append(record.psg)
    agreement = agreement_from_confusion(confusion)
    return {
        "n_nights": len(psg),
        "n_subjects": len(subjects),
        "n_epochs": agreement["n_epochs"],
        "accuracy": agreement["accuracy"],
        "kappa_5class": agreement["kappa_5class"],
        "kappa_4class": agreement["kappa_4class"],
        "kappa_sleep_wake": agreement["kappa_sleep_wake"],
        "f1": stage_f1(confusion),
        "confusion_matrix": confusion.tolist(),
        "bland_altman": {
            score: bland_altman(_score_column(psg, score), _score_column(predicted, score)) for score in CARD_SCORES
        },
    }


def model_card(params: Mapping[str, Any], nights: Iterable[TrainingNight]) -> dict[str, Any]:
    """The model's held-out metrics on ``nights`` (one pass over them), as a JSON-ready dict.

    ``n_epochs`` counts the epochs scored in both the PSG and the prediction (an epoch without
    sensor signal has no predicted stage); the confusion matrix has PSG stages as rows.
    """
    model = model_from_params(params)
    card = card_from_records(night_record(model, night) for night in nights)
    return {"sunalgo_version": model.sunalgo_version, **card}


# --------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown tables for the UI."""
    lines = [
        "### Held-out performance",
        "",
        f"{card['n_nights']} nights of {card['n_subjects']} held-out subjects, {card['n_epochs']} epochs compared.",
        "",
        "| Epoch agreement | Value |",
        "|---|---|",
        f"| Accuracy | {_fmt(card['accuracy'], 3)} |",
        f"| Cohen's kappa, 5 stages | {_fmt(card['kappa_5class'], 3)} |",
        f"| Cohen's kappa, 4 classes (N1+N2 merged) | {_fmt(card['kappa_4class'], 3)} |",
        f"| Cohen's kappa, sleep/wake | {_fmt(card['kappa_sleep_wake'], 3)} |",
        "",
        "| Stage | " + " | ".join(STAGES) + " |",
        "|---|" + "---|" * len(STAGES),
        "| F1 | " + " | ".join(_fmt(card["f1"][s], 3) for s in STAGES) + " |",
        "",
        "| Score (sunalgo - PSG) | Nights | Bias | SD | 95 % limits of agreement |",
        "|---|---|---|---|---|",
    ]
    for score, ba in card["bland_altman"].items():
        limits = "n/a" if ba["loa_lower"] is None else f"{ba['loa_lower']:.1f} to {ba['loa_upper']:.1f}"
        lines.append(
            f"| {SCORE_LABELS.get(score, score)} | {ba['n']} | {_fmt(ba['bias'], 1)} | {_fmt(ba['sd'], 1)} | {limits} |"
        )
    return "\n".join(lines) + "\n"
