"""The shipped model file is what its documented command produces, byte for byte."""

import json
import math
import subprocess
import sys

from sunalgo.model import DEFAULT_PARAMS_PATH


def test_shipped_params_are_reproduced_by_their_command(tmp_path):
    """Run the documented command itself (a fresh process, as a user would) and compare bytes."""
    shipped = json.loads(DEFAULT_PARAMS_PATH.read_text())
    training = shipped["training"]
    assert training["command"] == (
        f"sunrise fit-model --bootstrap-synthetic --nights {training['nights']} --seed {training['seed']}"
    )
    out = tmp_path / "params.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sunrise_assets.cli",
            "fit-model",
            "--bootstrap-synthetic",
            "--nights",
            str(training["nights"]),
            "--seed",
            str(training["seed"]),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    # Same structure and numbers; floats to 1e-6 relative, since another CPU's BLAS kernels may
    # round the 8th significant digit differently (on one machine the bytes are identical).
    refit = json.loads(out.read_text())
    _assert_close(refit, shipped)


def _assert_close(a, b, path="params"):
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, path


def test_fitted_model_beats_chance_on_unseen_synthetic_nights():
    import numpy as np

    from sunalgo import agreement, model
    from sunrise_assets.synthetic.bootstrap_fit import night_training_arrays
    from sunrise_assets.synthetic.simulator import synthesize_night

    accs = []
    for i in range(3):
        x, y, _, _ = night_training_arrays(synthesize_night(np.random.default_rng([99, i])))
        accs.append(agreement.epoch_agreement(y, model.predict(x).stage)["accuracy"])
    assert min(accs) > 0.6, accs
