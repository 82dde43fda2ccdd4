"""Candidates made of sunalgo *code*: a working tree or a git ref computes the candidate's gold.

Eight generated nights go through the real pipeline (embedded default). A copy of sunalgo whose stage
model scores every REM epoch as N1 is run as a candidate: its predictions, confusion matrices and
clinical scores are checked against production's gold transformed here by plain numpy (REM -> N1),
and the candidate's run must name the package it imported. An unchanged copy gives no change at all;
a git ref of a throwaway repository gives the same package as the changed tree. Production objects
and warehouse rows stay byte-identical through run and drop.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetRecordsFilter, DagsterInstance

from sunalgo.labels import STAGES
from tests.conftest import use_embedded_workdir
from tests.test_model_loop import _production_snapshot, _warehouse

REPO = Path(__file__).resolve().parents[1]
N_NIGHTS = 8
REM, N1 = STAGES.index("REM"), STAGES.index("N1")
ANCHOR = "    stage = np.where(valid, np.argmax(post, axis=1), -1).astype(np.int8)\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from resources.bucket import BucketResource
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path_factory.mktemp("candidate-code")
    with pytest.MonkeyPatch.context() as mp:
        use_embedded_workdir(work, mp)
        generate_bucket(work / "bucket", N_NIGHTS, seed=43)
        bucket = BucketResource(url=str(work / "bucket"))
        instance = DagsterInstance.get()
        assert not ingest(bucket, instance).failed
        yield {"work": work, "bucket": bucket, "instance": instance, "trees": tmp_path_factory.mktemp("trees")}
        instance.dispose()


def _sunalgo_copy(root: Path, *, rem_as_n1: bool) -> Path:
    """A directory holding a copy of this repository's sunalgo, optionally with REM scored as N1."""
    shutil.copytree(REPO / "sunalgo", root / "sunalgo", ignore=shutil.ignore_patterns("__pycache__"))
    if rem_as_n1:
        model_py = root / "sunalgo" / "model.py"
        text = model_py.read_text()
        assert text.count(ANCHOR) == 1, "the stage model's decision line moved: update the test's anchor"
        model_py.write_text(
            text.replace(ANCHOR, ANCHOR + f"    stage[stage == {REM}] = {N1}  # candidate: REM as N1\n")
        )
    return root


def _tree_sha256(root: Path) -> str:
    """The package's content hash, from its definition (path and SHA-256 of each file, path order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in (root / "sunalgo").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _invoke(*args: str):
    from typer.testing import CliRunner

    from sunrise_assets.cli.app import app

    return CliRunner().invoke(app, list(args))


def _refused(*args: str) -> str:
    """A command that must fail with a user error (main() prints it as one line): its message."""
    from sunrise_assets.cli.console import UserError

    result = _invoke(*args)
    assert result.exit_code != 0 and isinstance(result.exception, UserError), result.output
    return " ".join(str(result.exception).split())


def _cli(*args: str) -> str:
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def _gold_metadata(instance: DagsterInstance, name: str) -> dict:
    from sunrise_assets.defs.candidate_assets import candidate_key

    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=candidate_key(name, "gold")), limit=1
    ).records[0]
    return {k: v.value for k, v in record.event_log_entry.asset_materialization.metadata.items()}


def _check_rem_as_n1(bucket, name: str, nights: list[str]) -> None:
    """The candidate's gold is production's with every REM epoch scored N1, computed here by numpy."""
    from sunrise_assets.domain import candidates, layout
    from sunrise_assets.domain.layer_files import read_json, read_parquet

    rem_epochs = 0
    for night in nights:
        production = read_parquet(bucket, layout.gold_predictions(night))
        candidate = read_parquet(bucket, candidates.predictions_path(name, night))
        stage = production.column("stage_code").to_numpy().astype(np.int8)
        rem_epochs += int(np.sum(stage == REM))
        expected = np.where(stage == REM, N1, stage)
        assert np.array_equal(candidate.column("stage_code").to_numpy(), expected), night
        for column in ("p_REM", "p_N1", "resp_event_prob"):  # the same features, the same posteriors
            assert np.array_equal(
                candidate.column(column).to_numpy(), production.column(column).to_numpy(), equal_nan=True
            ), (night, column)
        cm = np.asarray(read_json(bucket, layout.gold_agreement(night))["confusion_matrix"])
        cm[:, N1] += cm[:, REM]
        cm[:, REM] = 0
        assert np.array_equal(
            np.asarray(read_json(bucket, candidates.agreement_path(name, night))["confusion_matrix"]), cm
        )
        ours = read_json(bucket, candidates.scores_path(name, night))["sunalgo"]
        theirs = read_json(bucket, layout.gold_scores(night))["sunalgo"]
        assert ours["rem_min"] == 0 and ours["n1_min"] == pytest.approx(theirs["n1_min"] + theirs["rem_min"])
        assert ours["total_sleep_time_min"] == theirs["total_sleep_time_min"]  # REM and N1 are both sleep
        assert ours["ahi"] == theirs["ahi"]
    assert rem_epochs > 0, "production scored no REM: the check would prove nothing"


def test_a_changed_working_tree_computes_the_candidate_gold(env):
    from sunrise_assets.domain import candidates

    work, bucket, instance = env["work"], env["bucket"], env["instance"]
    before = _production_snapshot(work)
    tree = _sunalgo_copy(env["trees"] / "rem-as-n1", rem_as_n1=True)
    nights = instance.get_dynamic_partitions("nights")

    output = _cli("candidate", "run", "remn1", "--sunalgo-tree", str(tree), "--all-nights", "--workdir", str(work))
    assert "tree" in output
    _check_rem_as_n1(bucket, "remn1", nights)

    # the candidate's process imported the copy, extracted under the work dir, not production's sunalgo
    tree_sha = _tree_sha256(tree)
    meta = _gold_metadata(instance, "remn1")
    extracted = work / "candidates" / "remn1" / "code" / tree_sha[:16]
    assert meta["sunalgo_file"] == str((extracted / "sunalgo" / "__init__.py").resolve())
    assert meta["sunalgo_tree_sha256"] == tree_sha and meta["nights"] == N_NIGHTS
    assert candidates.load(bucket, "remn1").code["tree_sha256"] == tree_sha
    with _warehouse(work) as conn:
        rem = conn.execute(
            "SELECT COUNT(*), SUM(value) FROM candidate_scores WHERE candidate = 'remn1' AND score = 'sunalgo_rem_min'"
        ).fetchone()
    assert rem == (N_NIGHTS, 0)

    listed = _cli("candidate", "list", "--workdir", str(work))
    assert "remn1" in listed and tree_sha[:12] in listed

    _cli("candidate", "compare", "remn1", "--workdir", str(work))
    report = candidates.load_comparison(bucket, "remn1")
    assert report["n_nights"] == N_NIGHTS and report["candidate_code"]["tree_sha256"] == tree_sha

    # in the code location beside production: its code version is the package's hash, fed by silver
    from sunrise_assets.definitions import build_defs
    from sunrise_assets.defs.candidate_assets import candidate_key

    node = build_defs().resolve_asset_graph().get(candidate_key("remn1", "gold"))
    assert node.code_version == f"sunalgo-tree.{tree_sha[:16]}"
    assert {k.to_user_string() for k in node.parent_keys} >= {"silver_signals", "psg_hypnogram"}

    assert "merge the ref" in _refused("candidate", "promote", "remn1", "--workdir", str(work)).lower()

    # its parameters are production's: promoting only them changes nothing
    production_model = bucket.read_bytes("models/production.json") if bucket.exists("models/production.json") else None
    output = _cli("candidate", "promote", "remn1", "--params-only", "--workdir", str(work))
    assert "already is production: nothing changes" in " ".join(output.split())
    assert (bucket.read_bytes("models/production.json") if bucket.exists("models/production.json") else None) == (
        production_model
    )

    output = _cli("candidate", "drop", "remn1", "--workdir", str(work))
    assert "dropped candidate remn1" in output and not extracted.exists()
    assert _production_snapshot(work) == before


def test_an_unchanged_tree_changes_nothing(env):
    from sunrise_assets.domain import candidates

    work, bucket = env["work"], env["bucket"]
    before = _production_snapshot(work)
    tree = _sunalgo_copy(env["trees"] / "same", rem_as_n1=False)
    _cli("candidate", "run", "same", "--sunalgo-tree", str(tree), "--all-nights", "--workdir", str(work))
    assert _gold_metadata(env["instance"], "same")["sunalgo_file"].startswith(str(work / "candidates" / "same"))
    _cli("candidate", "compare", "same", "--workdir", str(work))
    report = candidates.load_comparison(bucket, "same")
    assert report["n_nights"] == N_NIGHTS
    assert {r["verdict"] for r in [*report["scores"].values(), *report["epochs"].values()]} == {"no significant change"}
    for row in report["scores"].values():
        assert row["mae_change"]["estimate"] == 0 == row["mae_change"]["ci_lower"] == row["mae_change"]["ci_upper"]
    for row in report["epochs"].values():
        assert row["change"]["estimate"] == 0 == row["change"]["ci_lower"] == row["change"]["ci_upper"]
    _cli("candidate", "drop", "same", "--workdir", str(work))
    assert _production_snapshot(work) == before


def test_a_git_ref_is_exported_without_its_work_tree(env):
    """The ref's sunalgo, not the work tree's: the tree is left broken after the commit."""
    from sunrise_assets.domain import candidates

    work, bucket = env["work"], env["bucket"]
    before = _production_snapshot(work)
    repo = env["trees"] / "repo"
    _sunalgo_copy(repo, rem_as_n1=False)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "sunalgo"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "production sunalgo"], check=True)
    changed = _sunalgo_copy(env["trees"] / "changed-for-ref", rem_as_n1=True)
    shutil.copy(changed / "sunalgo" / "model.py", repo / "sunalgo" / "model.py")
    subprocess.run([*git, "commit", "-q", "-am", "REM as N1"], check=True)
    subprocess.run([*git, "tag", "rem-as-n1"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (repo / "sunalgo" / "model.py").write_text("raise ImportError('the work tree, not the ref')\n")

    args = ("--git-repo", str(repo), "--all-nights", "--workdir", str(work))
    _cli("candidate", "run", "fromref", "--sunalgo-ref", "rem-as-n1", *args)
    code = candidates.load(bucket, "fromref").code
    assert code["kind"] == "git" and code["ref"] == "rem-as-n1" and code["commit"] == commit
    assert code["tree_sha256"] == _tree_sha256(changed)  # the same files as the changed tree
    _check_rem_as_n1(bucket, "fromref", env["instance"].get_dynamic_partitions("nights"))
    assert commit[:10] in _cli("candidate", "list", "--workdir", str(work))

    assert "no-such-ref" in _refused("candidate", "run", "nosuch", "--sunalgo-ref", "no-such-ref", *args)
    _cli("candidate", "drop", "fromref", "--workdir", str(work))
    assert _production_snapshot(work) == before
