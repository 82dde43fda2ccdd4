"""Fit sunalgo's model on synthetic nights: the documented, reproducible `sunrise fit-model`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sunalgo import features, model, preprocess
from sunalgo.labels import OBSTRUCTIVE_TYPES, RESPIRATORY_EVENT_TYPES, events_to_epoch_mask
from sunrise_assets.synthetic.simulator import SyntheticNight, synthesize_night


def night_training_arrays(night: SyntheticNight) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Features, truth stages, obstructive-event epoch mask and respiratory event count of a night."""
    acc = night.acc_counts.astype(np.float32) * np.float32(night.acc_scale)
    gyro = night.gyro_counts.astype(np.float32) * np.float32(night.gyro_scale)
    n_epochs = int(night.stages.size)
    # PSG epoch 0 sits at -sensor_offset_s on the sensor's clock.
    signals = preprocess.preprocess_arrays(acc, gyro, night.rate_hz, -night.sensor_offset_s, n_epochs)
    x = features.epoch_features(signals)
    ev = night.events
    obstructive = ev[ev["type"].isin(OBSTRUCTIVE_TYPES)]
    mask = events_to_epoch_mask(obstructive["onset_s"].to_numpy(), obstructive["duration_s"].to_numpy(), n_epochs)
    # The PSG AHI counts every apnea and hypopnea, so the event-count calibration does too.
    n_events = int(ev["type"].isin(RESPIRATORY_EVENT_TYPES).sum())
    return x, night.stages.astype(np.int8), mask, n_events


def fit_from_synthetic(n_nights: int, seed: int, out: Path, *, on_night: Callable[[], None] | None = None) -> dict:
    xs, ys, masks, counts = [], [], [], []
    for i in range(n_nights):
        # One independent stream per night, so night i is the same whatever n_nights is.
        rng = np.random.default_rng([seed, i])
        x, y, m, n_events = night_training_arrays(synthesize_night(rng))
        xs.append(x)
        ys.append(y)
        masks.append(m)
        counts.append(n_events)
        if on_night:
            on_night()
    params = model.fit(
        xs,
        ys,
        masks,
        seed=seed,
        event_counts=counts,
        training={
            "source": "synthetic nights from sunrise_assets.synthetic.simulator.synthesize_night",
            "command": f"sunrise fit-model --bootstrap-synthetic --nights {n_nights} --seed {seed}",
            "nights": n_nights,
            "seed": seed,
            "epochs": int(sum(y.size for y in ys)),
        },
    )
    model.save_model(params, out)
    return params
