"""Clinical scores side by side with yasa on every real hypnogram of ../shared/data/real: 0.01 min.

Mapping of the definitions (ours -> yasa): time_in_bed_min TIB, sleep_period_time_min SPT, waso_min
WASO, total_sleep_time_min TST, sleep_onset_latency_min SOL, sleep_efficiency_pct SE, n1..rem_min
N1..REM, n1..rem_pct %N1..%REM, w_min ``Hypnogram.sleep_statistics()["WAKE"]``. REM latency differs by
definition: yasa's Lat_REM counts from lights off, the AASM one (ours) from sleep onset, so
rem_latency_min == Lat_REM - SOL. Unscored epochs (ours -1) are yasa's Uns/Art: in TIB, neither sleep
nor wake.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import yasa

from sunalgo.scores import clinical_scores
from sunrise_assets.domain.psg_readers import read_labels
from tests.conftest import real_file

TOL = 0.01  # minutes (and percentage points)
PAIRS = {
    "TIB": "time_in_bed_min",
    "SPT": "sleep_period_time_min",
    "WASO": "waso_min",
    "TST": "total_sleep_time_min",
    "SOL": "sleep_onset_latency_min",
    "SE": "sleep_efficiency_pct",
    "N1": "n1_min",
    "N2": "n2_min",
    "N3": "n3_min",
    "REM": "rem_min",
    "%N1": "n1_pct",
    "%N2": "n2_pct",
    "%N3": "n3_pct",
    "%REM": "rem_pct",
}
REAL_HYPNOGRAMS = {
    "sleep-edf SC4001EC": (("sleep_edf", "SC4001EC-Hypnogram.edf"), None),
    "yasa 6 h": (("yasa", "data_full_6hrs_100Hz_hypno_30s.txt"), "yasa"),
    "profusion 100022": (("nsrr_xml", "compumedics_profusion", "100022.xml"), None),
    "nsrr 100022": (("nsrr_xml", "nsrr_psgannotation", "100022_Compumedics.xml"), None),
    "noxturnal 1": (("noxturnal_rsleep", "noxturnal_events_example_unicode.csv"), None),
    "noxturnal 2": (("noxturnal_rsleep", "noxturnal_events_example_unicode_2.csv"), None),
    **{
        f"walch {s}": (("sleep_accel_walch2019", "features", f"{s}_psg_labels.out"), "rk-5rem")
        for s in ("46343", "759667", "781756", "844359")
    },
}
YASA_STR = {0: "WAKE", 1: "N1", 2: "N2", 3: "N3", 4: "REM", -1: "UNS"}


def yasa_stats(stages: np.ndarray) -> tuple[dict, dict]:
    """yasa's two implementations: the sleep_statistics function and the Hypnogram method."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sleep_statistics is deprecated in 0.8
        legacy = yasa.sleep_statistics(stages.astype(int), sf_hyp=1 / 30)
    method = yasa.Hypnogram([YASA_STR[c] for c in stages.tolist()], n_stages=5).sleep_statistics()
    return legacy, method


def compare(ours: dict, legacy: dict, method: dict) -> float:
    """Largest absolute difference over the paired scores; asserts each within TOL."""
    worst = 0.0
    for theirs_key, our_key in PAIRS.items():
        for theirs in (legacy, method):
            if theirs_key not in theirs:
                continue
            value, ref = ours[our_key], theirs[theirs_key]
            if ref is None or np.isnan(ref):
                assert value is None, our_key
                continue
            assert value == pytest.approx(ref, abs=TOL), (our_key, value, ref)
            worst = max(worst, abs(value - ref))
    # Our w_min is yasa's WAKE (all wake in bed); our REM latency is AASM's: from sleep onset.
    assert ours["w_min"] == pytest.approx(method["WAKE"], abs=TOL)
    if not np.isnan(legacy["Lat_REM"]):
        assert ours["rem_latency_min"] == pytest.approx(legacy["Lat_REM"] - legacy["SOL"], abs=TOL)
        assert ours["rem_latency_min"] == pytest.approx(method["Lat_REM"] - method["SOL"], abs=TOL)
        worst = max(worst, abs(ours["rem_latency_min"] - (legacy["Lat_REM"] - legacy["SOL"])))
    return worst


@pytest.mark.parametrize("name", list(REAL_HYPNOGRAMS))
def test_scores_agree_with_yasa_on_real_hypnograms(name):
    parts, coding = REAL_HYPNOGRAMS[name]
    labels = read_labels(real_file(*parts).read_bytes(), source=parts[-1], stage_coding=coding)
    assert labels.n_epochs > 0
    ours = clinical_scores(labels.stages, respiratory_events=None, epoch_s=labels.epoch_s)
    legacy, method = yasa_stats(labels.stages)
    worst = compare(ours, legacy, method)
    print(f"{name}: {labels.n_epochs} epochs, max |ours - yasa| = {worst:.2e} min")
    assert worst <= TOL


def test_rem_latency_definition_differs_from_yasa_by_sol():
    labels = read_labels(real_file("yasa", "data_full_6hrs_100Hz_hypno_30s.txt").read_bytes(), stage_coding="yasa")
    ours = clinical_scores(labels.stages, respiratory_events=None)
    legacy, _ = yasa_stats(labels.stages)
    assert legacy["SOL"] > 0
    assert ours["rem_latency_min"] == pytest.approx(legacy["Lat_REM"] - legacy["SOL"])
    assert ours["rem_latency_min"] != pytest.approx(legacy["Lat_REM"]), (
        "AASM counts from sleep onset, yasa from lights off"
    )


SRI_TO_STAGE = {0: 0, 1: 2, 2: 3, 3: 4}  # W, light -> N2, deep -> N3, REM
SRI_TO_YASA = {0: "WAKE", 1: "LIGHT", 2: "DEEP", 3: "REM"}


def sri_nights() -> dict[tuple[str, str], np.ndarray]:
    df = pd.read_csv(real_file("yasa_sri", "sample_data_sri_sbj01-sbj03.csv"))
    return {
        (subject, scorer): night[scorer].to_numpy()
        for subject, night in df.groupby("subject")
        for scorer in ("reference", "device")
    }


def test_scores_agree_with_yasa_on_the_sri_sample():
    """4-class nights (W / light / deep / REM): light is mapped to N2, which changes no score compared."""
    nights = sri_nights()
    assert len(nights) == 6
    for (subject, scorer), codes in nights.items():
        stages = np.vectorize(SRI_TO_STAGE.get)(codes)
        ours = clinical_scores(stages, respiratory_events=None)
        legacy, method5 = yasa_stats(stages)
        compare(ours, legacy, method5)
        four = yasa.Hypnogram([SRI_TO_YASA[c] for c in codes.tolist()], n_stages=4).sleep_statistics()
        for theirs_key, our_key in (
            ("TIB", "time_in_bed_min"),
            ("SPT", "sleep_period_time_min"),
            ("WASO", "waso_min"),
            ("TST", "total_sleep_time_min"),
            ("SOL", "sleep_onset_latency_min"),
            ("SE", "sleep_efficiency_pct"),
            ("DEEP", "n3_min"),
            ("REM", "rem_min"),
            ("WAKE", "w_min"),
        ):
            assert ours[our_key] == pytest.approx(four[theirs_key], abs=TOL), (subject, scorer, our_key)
        assert ours["n1_min"] + ours["n2_min"] == pytest.approx(four["LIGHT"], abs=TOL)
        assert ours["rem_latency_min"] == pytest.approx(four["Lat_REM"] - four["SOL"], abs=TOL)
