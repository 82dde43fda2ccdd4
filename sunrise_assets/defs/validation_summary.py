"""Validation across nights: how sunalgo agrees with the PSG over every scored night.

``validation_summary`` is unpartitioned and sits in its own group (``validation``), so a per-night
run of the layers never selects it. It writes ``gold/validation_summary.json``:

- Bland-Altman bias, SD and 95 % limits of agreement (sunalgo minus PSG) of TST, SE, SOL, WASO and
  AHI over the nights (:func:`sunalgo.agreement.validation_summary`); a night where a score is None
  on either side is left out of that score only;
- epoch-by-epoch agreement pooled over every epoch of those nights (their summed confusion
  matrices) and the mean of the per-night figures.

Nights: the registered ones (one query to the instance) whose gold ``clinical_scores`` and
``psg_agreement`` documents both exist (one listing of the gold prefix); the others are skipped
and counted. A study without staging (a home sleep test: the PSG has no TST) is counted and left
out, since every score compared here but AHI needs the PSG's stages. The nights' documents are read
a few at a time and reduced to a handful of floats each: memory does not grow with their hypnograms.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

import sunalgo
from resources.bucket import BucketResource
from sunalgo import agreement
from sunalgo.labels import STAGES
from sunrise_assets.defs.automation import follows_every_night
from sunrise_assets.defs.jobs import VALIDATION
from sunrise_assets.defs.partitions import nights_partitions
from sunrise_assets.domain import layout
from sunrise_assets.domain.layer_files import read_json, write_json

# Bias key (as sunalgo.agreement.score_bias names it) -> clinical score, and AHI where both have it.
SUMMARY_SCORES: dict[str, str] = {**agreement.BIAS_SCORES, "ahi_bias_per_h": "ahi"}
SCORE_LABELS = {
    "total_sleep_time_min": "TST (min)",
    "sleep_efficiency_pct": "SE (%)",
    "sleep_onset_latency_min": "SOL (min)",
    "waso_min": "WASO (min)",
    "ahi": "AHI (/h)",
}
EPOCH_METRICS = (
    "accuracy",
    "kappa_5class",
    "kappa_4class",
    "kappa_sleep_wake",
    "sleep_sensitivity",
    "wake_specificity",
)
# Reads in flight: on GCS each is a round trip, so a few overlap; locally it changes little.
READ_THREADS = 8
READ_CHUNK = 64


def has_staging(psg_scores: Mapping[str, Any]) -> bool:
    """A PSG with staging always has a TST (0 when it has no sleep); a home sleep test has None."""
    return psg_scores.get("total_sleep_time_min") is not None


@dataclass
class Accumulator:
    """What the summary needs from each night, reduced as the nights stream by."""

    reference: list[dict[str, float | None]] = field(default_factory=list)
    predicted: list[dict[str, float | None]] = field(default_factory=list)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((len(STAGES), len(STAGES)), dtype=np.int64))
    pooled_nights: int = 0
    per_night: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in EPOCH_METRICS})
    without_staging: int = 0
    sunalgo_versions: set[str] = field(default_factory=set)

    def add(self, clinical: Mapping[str, Any], agreement_doc: Mapping[str, Any]) -> None:
        if not has_staging(clinical["psg"]):
            self.without_staging += 1
            return
        self.reference.append({s: clinical["psg"].get(s) for s in SUMMARY_SCORES.values()})
        self.predicted.append({s: clinical["sunalgo"].get(s) for s in SUMMARY_SCORES.values()})
        if clinical.get("sunalgo_version"):
            self.sunalgo_versions.add(str(clinical["sunalgo_version"]))
        if agreement_doc.get("confusion_matrix") is not None:  # absent from documents written before it was
            self.confusion += np.asarray(agreement_doc["confusion_matrix"], dtype=np.int64)
            self.pooled_nights += 1
        for metric in EPOCH_METRICS:
            if agreement_doc.get(metric) is not None:
                self.per_night[metric].append(float(agreement_doc[metric]))

    def document(self, *, registered: int, missing: int) -> dict[str, Any]:
        pooled = agreement.agreement_from_confusion(self.confusion)
        return {
            "sunalgo_versions": sorted(self.sunalgo_versions),
            "nights": {
                "registered": registered,
                "used": len(self.reference),
                "without_staging": self.without_staging,
                "missing_gold_files": missing,
            },
            "scores": agreement.validation_summary(self.reference, self.predicted, tuple(SUMMARY_SCORES.values())),
            "epoch_agreement": {
                "pooled": {"nights": self.pooled_nights, **pooled},
                "mean_over_nights": {
                    m: {"n": len(v), "mean": float(np.mean(v)) if v else None} for m, v in self.per_night.items()
                },
            },
        }


def night_documents(
    bucket: BucketResource, nights: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """(night, clinical scores, agreement) in the order given, None for a document that is gone.

    Chunked, so at most ``READ_CHUNK`` nights' documents are held at once."""

    def read(night: str) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        docs: list[dict[str, Any] | None] = []
        for path in (layout.gold_scores(night), layout.gold_agreement(night)):
            try:
                docs.append(read_json(bucket, path))
            except FileNotFoundError:  # deleted between the listing and the read (a night forgotten)
                docs.append(None)
        return night, docs[0], docs[1]

    with ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(nights), READ_CHUNK):
            yield from pool.map(read, nights[start : start + READ_CHUNK])


def complete_nights(bucket: BucketResource, registered: Iterable[str]) -> tuple[list[str], list[str]]:
    """(nights with both gold documents, nights missing one), from one listing of the gold prefix."""
    present = {obj.path for obj in bucket.list(layout.GOLD_PREFIX)}
    complete, missing = [], []
    for night in registered:
        both = layout.gold_scores(night) in present and layout.gold_agreement(night) in present
        (complete if both else missing).append(night)
    return complete, missing


def summarise(bucket: BucketResource, registered: Iterable[str], log: logging.Logger | None = None) -> dict[str, Any]:
    """The summary document of the registered nights (what the asset writes)."""
    nights = sorted(set(registered))
    complete, missing = complete_nights(bucket, nights)
    acc = Accumulator()
    for night, clinical, agreement_doc in night_documents(bucket, complete):
        if clinical is None or agreement_doc is None:
            missing.append(night)
            continue
        acc.add(clinical, agreement_doc)
    if log is not None and missing:
        log.warning(
            (
                f"{len(missing)} night(s) skipped, gold clinical_scores or psg_agreement missing: "
                f"{', '.join(sorted(missing)[:20])}"
            )
            + (" ..." if len(missing) > 20 else "")
        )
    return acc.document(registered=len(nights), missing=len(missing))


def _fmt(value: float | None, signed: bool = False) -> str:
    return "–" if value is None else (f"{value:+.1f}" if signed else f"{value:.1f}")


def markdown_table(document: Mapping[str, Any]) -> str:
    nights = document["nights"]
    lines = [
        f"Bland–Altman agreement, sunalgo minus PSG, over {nights['used']} nights with PSG staging "
        f"({nights['without_staging']} without staging and {nights['missing_gold_files']} with gold files missing "
        "left out).",
        "",
        "| score | nights | bias | SD | 95 % limits of agreement |",
        "|---|---:|---:|---:|---|",
    ]
    for score in SUMMARY_SCORES.values():  # the JSON's keys are sorted: keep the clinical order
        ba = document["scores"][score]
        loa = "–" if ba["loa_lower"] is None else f"{_fmt(ba['loa_lower'], True)} to {_fmt(ba['loa_upper'], True)}"
        lines.append(
            f"| {SCORE_LABELS.get(score, score)} | {ba['n']} | {_fmt(ba['bias'], True)} | {_fmt(ba['sd'])} | {loa} |"
        )
    pooled, mean = document["epoch_agreement"]["pooled"], document["epoch_agreement"]["mean_over_nights"]

    def f2(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    lines += [
        "",
        "| epoch agreement | accuracy | kappa 5-class | kappa sleep/wake |",
        "|---|---:|---:|---:|",
        (
            f"| pooled over {pooled['n_epochs']} epochs | {f2(pooled['accuracy'])} | {f2(pooled['kappa_5class'])} | "
            f"{f2(pooled['kappa_sleep_wake'])} |"
        ),
        (
            f"| mean of nights | {f2(mean['accuracy']['mean'])} | {f2(mean['kappa_5class']['mean'])} | "
            f"{f2(mean['kappa_sleep_wake']['mean'])} |"
        ),
    ]
    return "\n".join(lines)


def summary_metadata(document: Mapping[str, Any]) -> dict[str, Any]:
    """Figures for the UI: nights, bias and limits of agreement per score (floats), the table."""
    nights = document["nights"]
    meta: dict[str, Any] = {
        "nights": nights["used"],
        "nights_without_staging": nights["without_staging"],
        "nights_missing_gold_files": nights["missing_gold_files"],
    }
    for key, score in SUMMARY_SCORES.items():
        ba = document["scores"][score]
        names = {
            "bias": key,
            "loa_lower": key.replace("_bias_", "_loa_lower_"),
            "loa_upper": key.replace("_bias_", "_loa_upper_"),
        }
        meta.update({name: round(float(ba[stat]), 3) for stat, name in names.items() if ba[stat] is not None})
    pooled, mean = document["epoch_agreement"]["pooled"], document["epoch_agreement"]["mean_over_nights"]
    for metric in ("accuracy", "kappa_5class", "kappa_sleep_wake"):
        if pooled[metric] is not None:
            meta[f"pooled_{metric}"] = round(float(pooled[metric]), 4)
        if mean[metric]["mean"] is not None:
            meta[f"mean_{metric}"] = round(float(mean[metric]["mean"]), 4)
    meta["summary"] = MetadataValue.md(markdown_table(document))
    return meta


@asset(
    deps=["clinical_scores", "psg_agreement"],
    group_name=VALIDATION,
    code_version=sunalgo.__version__,
    kinds={"json", "sunalgo"},
    automation_condition=follows_every_night(),
    description="Validation of sunalgo against the PSG across every night with PSG staging: Bland–Altman bias, SD and "
    "95 % limits of agreement of TST, SE, SOL, WASO and AHI (sunalgo minus PSG), and epoch agreement "
    "(accuracy, kappa) pooled over all epochs and averaged over nights. Nights with gold files missing are "
    "skipped and counted, home sleep tests (no staging) left out. Written to gold/validation_summary.json.",
)
def validation_summary(context: AssetExecutionContext, bucket: BucketResource) -> MaterializeResult:
    registered = context.instance.get_dynamic_partitions(nights_partitions.name)
    document = summarise(bucket, registered, context.log)
    path = layout.gold_validation_summary()
    write_json(bucket, path, document)
    return MaterializeResult(metadata={**summary_metadata(document), "path": MetadataValue.path(bucket.describe(path))})
