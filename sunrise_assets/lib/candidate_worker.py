"""The child process of a code candidate's gold: production's platform code, the candidate's sunalgo.

``candidate/<name>/gold`` (defs/candidate_assets.py) starts it as
``python -m sunrise_assets.lib.candidate_worker`` with the candidate's extracted ``sunalgo/`` first
on ``sys.path`` (domain/candidate_code.worker_command), so every ``sunalgo`` function used here —
features, model, scores, agreement — is the candidate's. For each of the candidate's nights it
computes epoch features from production's silver signals, predictions with the given parameters,
clinical scores (the PSG side read from production gold: the reference stays the same) and the
agreement with the PSG, and writes them to the candidate's namespace. The warehouse rows, the
failed nights and the proof of which sunalgo it imported (``sunalgo.__file__``) go back as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import sunalgo
from resources.bucket import BucketResource
from sunalgo import features, model
from sunrise_assets.defs.candidate_assets import score_candidate_night, warehouse_rows
from sunrise_assets.domain import candidates, layout
from sunrise_assets.domain.layer_files import read_parquet


def night_features(bucket: BucketResource, night: str) -> np.ndarray:
    """The night's epoch features by this process's sunalgo, from production's silver signals."""
    table = read_parquet(bucket, layout.silver_signals(night))
    signals = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    return np.asarray(features.epoch_features(signals), dtype=np.float64)


def run(bucket: BucketResource, name: str, params: bytes, version: str) -> dict:
    candidate = candidates.load(bucket, name)
    stage_model = model.model_from_params(json.loads(params), f"model {version}")
    began, rows, failed = time.perf_counter(), [], {}
    for night in candidate.nights:
        try:
            matrix = night_features(bucket, night)
            documents = score_candidate_night(bucket, name, night, stage_model, version, matrix=matrix)
        except Exception as exc:  # noqa: BLE001 - a bad night fails alone, named
            failed[night] = f"night {night}: {type(exc).__name__}: {exc}"
            continue
        rows += warehouse_rows(night, version, documents)
    return {
        "sunalgo_file": str(Path(sunalgo.__file__).resolve()),
        "sunalgo_version": sunalgo.__version__,
        "nights": len(candidate.nights),
        "rows": rows,
        "failed": failed,
        "seconds": round(time.perf_counter() - began, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket-url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--params", required=True, type=Path, help="the parameter bytes (a file)")
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--out", required=True, type=Path, help="where the JSON result goes")
    args = parser.parse_args(argv)
    result = run(BucketResource(url=args.bucket_url), args.name, args.params.read_bytes(), args.model_version)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
