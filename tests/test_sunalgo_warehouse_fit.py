"""sunalgo.warehouse_fit: the streamed fit against model._fit_params, determinism, bounded memory.

Also a benchmark of the streamed fit on many ~960-epoch nights (run as a script):

    uv run python tests/test_sunalgo_warehouse_fit.py --benchmark 2000
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from functools import lru_cache

import numpy as np
import pytest

from sunalgo import model as sm
from sunalgo.warehouse_fit import (
    EpochSample,
    TrainingNight,
    context_windows,
    epoch_keys,
    fit_streamed,
    window_inputs,
)


@lru_cache(maxsize=4)
def synthetic_pool(n_nights: int, n_epochs: int | None = None) -> tuple[TrainingNight, ...]:
    """Training nights from the platform's synthetic generator (features through the real chain)."""
    from sunrise_assets.synthetic.bootstrap_fit import night_training_arrays
    from sunrise_assets.synthetic.simulator import synthesize_night

    nights = []
    for i in range(n_nights):
        x, y, mask, n_events = night_training_arrays(
            synthesize_night(np.random.default_rng([77, i]), n_epochs=n_epochs)
        )
        nights.append(TrainingNight(f"sub-{i:08x}_ses-20240101", x, y, mask, n_events))
    return tuple(nights)


def night_id(i: int) -> str:
    return f"sub-{i:08x}_ses-20240101"


def jittered_reader(pool: tuple[TrainingNight, ...], n_nights: int):
    """read_nights() of n_nights distinct nights made lazily from the pool (1 % multiplicative jitter)."""

    def read_nights():
        for i in range(n_nights):  # one night in memory at a time, like a database cursor
            base = pool[i % len(pool)]
            rng = np.random.default_rng([5, i])
            x = base.features * (1.0 + 0.01 * rng.standard_normal(base.features.shape))
            yield TrainingNight(night_id(i), x, base.stages, base.resp_mask, base.event_count)

    return read_nights


def all_stages(params: dict, nights) -> np.ndarray:
    model = sm.model_from_params(params)
    return np.concatenate([sm.predict(n.features, model).stage for n in nights])


def test_full_sample_equals_fit_params_on_the_same_nights():
    nights = synthetic_pool(6)
    streamed = fit_streamed(lambda: iter(nights), max_epochs=10**7, training={"source": "test"})
    reference, diag = sm._fit_params(
        [n.features for n in nights],
        [n.stages for n in nights],
        [n.resp_mask for n in nights],
        [n.event_count for n in nights],
        1e-2,
    )
    reference = sm._jsonable(reference)
    n_epochs = sum(n.stages.size for n in nights)
    assert streamed["fit"]["fit_sample_epochs"] == diag["n_epochs_fitted"] <= n_epochs
    # Every epoch is sampled, in stream order: the regressions see the very same rows, so the
    # parameters are the same numbers (to the 8 significant digits written to params.json).
    for block in ("standardisation", "stage_model", "respiratory_model"):
        assert streamed[block] == reference[block], block
    same = all_stages(streamed, nights) == all_stages(reference, nights)
    assert same.mean() >= 0.99
    assert streamed["training"]["source"] == "test" and streamed["training"]["n_nights"] == 6
    assert streamed["training"]["stage_epochs"] == dict(
        zip(("W", "N1", "N2", "N3", "REM"), diag["stage_counts"].tolist())
    )
    assert streamed["training"]["respiratory_events"] == diag["respiratory_events"]


def test_bounded_sample_keeps_exact_counts_and_calibrates_on_every_night():
    nights = synthetic_pool(6)
    streamed = fit_streamed(lambda: iter(nights), max_epochs=1500)
    assert streamed["fit"]["fit_sample_epochs"] == 1500 == streamed["fit"]["standardisation_sample_epochs"]
    reference, _ = sm._fit_params(
        [n.features for n in nights],
        [n.stages for n in nights],
        [n.resp_mask for n in nights],
        [n.event_count for n in nights],
        1e-2,
    )
    reference = sm._jsonable(reference)
    for key in ("prior", "transition", "initial"):  # counted over all nights, not the sample
        assert streamed["stage_model"][key] == reference["stage_model"][key]
    # The calibration uses every night's flags under the streamed model itself.
    model = sm.model_from_params(streamed)
    flagged = sum(
        int(np.count_nonzero(p.resp_event & (p.stage > 0))) for p in (sm.predict(n.features, model) for n in nights)
    )
    total = sum(n.event_count for n in nights)
    assert streamed["respiratory_model"]["events_per_flagged_epoch"] == pytest.approx(total / flagged, rel=1e-7)
    # A 1500-epoch sample still gives nearly the same hypnograms as the full fit.
    assert (all_stages(streamed, nights) == all_stages(reference, nights)).mean() > 0.9


def test_same_data_gives_byte_identical_files(tmp_path):
    nights = synthetic_pool(6)
    a = fit_streamed(lambda: iter(nights), max_epochs=2000, training={"source": "warehouse"})
    # Same nights, new array objects and another stream object: still the same bytes.
    copies = [
        TrainingNight(n.night_id, n.features.copy(), n.stages.copy(), n.resp_mask.copy(), n.event_count) for n in nights
    ]
    b = fit_streamed(lambda: (n for n in copies), max_epochs=2000, training={"source": "warehouse"})
    sm.save_model(a, tmp_path / "a.json")
    sm.save_model(b, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    json.loads((tmp_path / "a.json").read_text())
    loaded = sm.load_model(tmp_path / "a.json")
    np.testing.assert_array_equal(sm.predict(nights[0].features, loaded).stage, all_stages(a, nights[:1]))


def test_epoch_sample_is_the_bottom_k_of_the_keys_whatever_the_chunking():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 400, size=60)
    sample = EpochSample(700)
    offered = []
    for ordinal, n in enumerate(sizes.tolist()):
        keys = epoch_keys(night_id(ordinal), n)
        candidates = rng.random(n) < 0.8
        sample.offer(keys, candidates, ordinal, lambda e: {"value": e * 10})
        offered += [(int(k), ordinal, int(e)) for e, k in zip(np.flatnonzero(candidates), keys[candidates])]
    rows = sample.rows()
    expected = sorted(sorted(offered)[:700], key=lambda t: (t[1], t[2]))  # brute force, stream order
    assert [(int(k), o, int(e)) for k, o, e in zip(rows["key"], rows["night"], rows["epoch"])] == expected
    np.testing.assert_array_equal(rows["value"], rows["epoch"] * 10)


def test_epoch_keys_depend_on_night_and_epoch_only():
    a = epoch_keys("sub-00000001_ses-20240101", 1000)
    assert a.dtype == np.uint64 and np.unique(a).size == 1000
    np.testing.assert_array_equal(a[:10], epoch_keys("sub-00000001_ses-20240101", 10))
    assert not np.intersect1d(a, epoch_keys("sub-00000001_ses-20240102", 1000)).size
    # Roughly uniform: each quarter of the 64-bit range holds ~25 %.
    quarter = np.bincount((a >> np.uint64(62)).astype(np.int64), minlength=4) / a.size
    assert np.abs(quarter - 0.25).max() < 0.05


def test_window_inputs_equal_the_rows_of_the_whole_night():
    night = synthetic_pool(6)[0]
    f = night.features.copy()
    f[[0, 5, 6, 200]] = np.nan  # gaps: neighbours without signal fall back to the epoch itself
    f[-1] = np.nan
    center, scale = np.nanmedian(f, axis=0), np.full(f.shape[1], 2.0)
    full, valid = sm._inputs(f, center, scale, sm.SQUASH, sm.CONTEXT_OFFSETS)
    epochs = np.flatnonzero(valid)
    windows = context_windows(f, epochs)
    np.testing.assert_array_equal(window_inputs(windows, center, scale), full[epochs])
    np.testing.assert_array_equal(window_inputs(windows, center, scale, batch=7), full[epochs])


def test_the_stream_is_checked():
    nights = synthetic_pool(6)
    with pytest.raises(ValueError, match="increasing night_id"):
        fit_streamed(lambda: iter(nights[::-1]), max_epochs=500)
    with pytest.raises(ValueError, match="no night"):
        fit_streamed(lambda: iter(()), max_epochs=500)
    calls = []

    def changing():
        calls.append(1)
        return iter(nights if len(calls) == 1 else nights[:-1])

    with pytest.raises(ValueError, match="changed mid-fit"):
        fit_streamed(changing, max_epochs=500)
    bad = TrainingNight(night_id(0), nights[0].features[:, :3], nights[0].stages, nights[0].resp_mask)
    with pytest.raises(ValueError, match="features must be"):
        fit_streamed(lambda: iter([bad]), max_epochs=500)


def test_missing_event_counts_are_the_runs_of_the_mask():
    nights = synthetic_pool(6)[:3]
    unknown = [TrainingNight(n.night_id, n.features, n.stages, n.resp_mask, None) for n in nights]
    params = fit_streamed(lambda: iter(unknown), max_epochs=1000)
    assert params["training"]["respiratory_events"] == sum(sm._runs(n.resp_mask) for n in nights)


def peak_traced_bytes(read_nights, max_epochs: int) -> int:
    tracemalloc.start()
    try:
        fit_streamed(read_nights, max_epochs=max_epochs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_nights():
    pool = synthetic_pool(6)
    small = peak_traced_bytes(jittered_reader(pool, 40), 2000)
    large = peak_traced_bytes(jittered_reader(pool, 120), 2000)
    assert large < 1.2 * small, (small, large)
    # Sanity of the measure: keeping the nights would have shown (~120 x 1000 x 21 x 8 B = 20 MB).
    assert small < 15e6


# ---------------------------------------------------------------------------------------------
# Benchmark (run as a script)


def _reset_peak_rss() -> bool:
    """Linux: reset the process's peak RSS (VmHWM), so the pool's generation does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def benchmark(n_nights: int, pool_size: int = 40, max_epochs: int | None = None) -> None:
    t0 = time.perf_counter()
    pool = synthetic_pool(pool_size, 960)
    print(f"pool of {pool_size} synthetic 960-epoch nights built in {time.perf_counter() - t0:.1f} s (not timed below)")
    read_nights = jittered_reader(pool, n_nights)
    t0 = time.perf_counter()
    n_epochs = sum(n.stages.size for n in read_nights())
    stream_s = time.perf_counter() - t0
    kwargs = {} if max_epochs is None else {"max_epochs": max_epochs}
    reset = _reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    params = fit_streamed(read_nights, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = _peak_rss_mb()
    print(
        f"fit_streamed: {n_nights} nights, {n_epochs} epochs, sample {params['fit']['fit_sample_epochs']} epochs: "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s (of which making the stream twice ~{2 * stream_s:.1f} s), "
        f"peak RSS {peak_mb:.0f} MB{'' if reset else ' (process lifetime)'}, "
        f"in-sample kappa {params['metrics']['stage_kappa_in_sample']:.3f}, converged {params['fit']['converged']}"
    )


if __name__ == "__main__":
    if "--benchmark" in sys.argv:
        args = sys.argv[sys.argv.index("--benchmark") + 1 :]
        benchmark(int(args[0]) if args else 2000, max_epochs=int(args[1]) if len(args) > 1 else None)
