"""`sunrise deploy`: the Cloud Run job from configuration (YAML < environment < options),
created, then left alone, then updated when the configuration changes — against the fake API."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from resources.cloud_run.client import make_clients
from resources.cloud_run.job_spec import resource_variant_name
from sunrise_assets.cli.app import app
from sunrise_assets.cli.deploy import DeployError, apply, load_config
from tests.support.cloudrun import IMAGE, REPO, fake_image
from tests.support.fake_cloud_run import FakeCloudRun

OTHER_IMAGE = IMAGE.replace(":test", ":next")


@pytest.fixture
def fake(tmp_path):
    with FakeCloudRun({IMAGE: fake_image(), OTHER_IMAGE: fake_image()}, tmp_path / "logs") as server:
        yield server


def test_configuration_layers_yaml_environment_options(tmp_path):
    path = tmp_path / "cloudrun.yaml"
    path.write_text(
        "project: from-yaml\nregion: us-central1\ncpu: '4'\nenv:\n  A: '1'\nsecrets:\n  KEY: key-secret:3\n"
    )
    config = load_config(
        path,
        {"image": IMAGE, "memory": None, "env": {"B": "2"}},
        environ={"SUNRISE_GCP_PROJECT": "from-env", "SUNRISE_CLOUD_RUN_MEMORY": "8Gi"},
    )
    assert (config.project, config.region, config.cpu, config.memory, config.job) == (
        "from-env",
        "us-central1",
        "4",
        "8Gi",
        "sunrise-runs",
    )
    assert config.env == {"A": "1", "B": "2"} and config.secrets == {"KEY": "key-secret:3"}
    assert config.max_retries == 0 and config.timeout == 6 * 3600
    with pytest.raises(DeployError, match="missing image"):
        load_config(path, environ={})
    path.write_text("project: p\nimage: i\ncpus: 4\n")
    with pytest.raises(DeployError, match="unknown setting"):
        load_config(path, environ={})
    # The repository's own file is valid (placeholders aside) and holds no secret values.
    shipped = load_config(REPO / "deploy" / "cloudrun.yaml", {"image": IMAGE}, environ={})
    assert "DAGSTER_PG_PASSWORD" in shipped.secrets and "DAGSTER_PG_PASSWORD" not in shipped.env
    assert shipped.env["SUNRISE_EXECUTOR"] == "cloud_run"
    # Two buckets: the PHI zone apart from the pseudonymised layers; secrets only as references.
    assert shipped.env["SUNRISE_RAW_BUCKET"].startswith("gs://") and shipped.env["SUNRISE_BUCKET"].startswith("gs://")
    assert shipped.env["SUNRISE_RAW_BUCKET"].split("/")[2] != shipped.env["SUNRISE_BUCKET"].split("/")[2]
    assert {"SUNRISE_PSEUDONYM_KEY", "SUNRISE_WAREHOUSE_URL"} <= set(shipped.secrets)
    path.write_text("project: p\nimage: i\nenv:\n  SUNRISE_PSEUDONYM_KEY: k3y-v4lue\n")
    with pytest.raises(DeployError, match="SUNRISE_PSEUDONYM_KEY must be Secret Manager") as caught:
        load_config(path, environ={})
    assert "k3y-v4lue" not in str(caught.value)


def test_deploy_creates_then_leaves_alone_then_updates(fake):
    base = {
        "project": "sunrise-prod",
        "region": "europe-west1",
        "image": IMAGE,
        "api_endpoint": fake.endpoint,
        "cpu": "2",
        "memory": "4Gi",
        "timeout": 7200,
        "service_account": "runs@sunrise-prod.iam.gserviceaccount.com",
        "env": {"SUNRISE_BUCKET": "gs://b/sunrise"},
        "secrets": {"SUNRISE_PSEUDONYM_KEY": "pseudonym-key"},
        "network": "default",
        "subnetwork": "default",
    }
    first = apply(load_config(overrides=base, environ={}))
    assert first.action == "created" and first.generation == 1
    job = make_clients(fake.endpoint).jobs.get_job(name=first.job_name)
    task = job.template.template
    container = task.containers[0]
    assert first.job_name == "projects/sunrise-prod/locations/europe-west1/jobs/sunrise-runs"
    assert container.image == IMAGE and dict(container.resources.limits) == {"cpu": "2", "memory": "4Gi"}
    assert task.timeout.total_seconds() == 7200 and task.max_retries == 0
    assert task.service_account == "runs@sunrise-prod.iam.gserviceaccount.com"
    assert task.vpc_access.network_interfaces[0].network == "default"
    env = {v.name: v.value or f"secret:{v.value_source.secret_key_ref.secret}" for v in container.env}
    assert env == {
        "SUNRISE_BUCKET": "gs://b/sunrise",
        "SUNRISE_PSEUDONYM_KEY": "secret:pseudonym-key",
        "SUNRISE_GCP_PROJECT": "sunrise-prod",
        "SUNRISE_CLOUD_RUN_REGION": "europe-west1",
        "SUNRISE_CLOUD_RUN_JOB": "sunrise-runs",
    }

    again = apply(load_config(overrides=base, environ={}))
    assert again.action == "unchanged" and again.generation == 1  # idempotent: nothing written

    # Someone labels the job by hand; a new image is deployed: updated, their label kept.
    job.labels["team"] = "sleep-ml"
    make_clients(fake.endpoint).jobs.update_job(job=job).result(timeout=10)
    changed = apply(load_config(overrides={**base, "image": OTHER_IMAGE, "cpu": "2000m"}, environ={}))
    assert changed.action == "updated" and changed.changed == ["image"]  # 2000m is 2 CPUs: no change
    live = make_clients(fake.endpoint).jobs.get_job(name=first.job_name)
    assert live.template.template.containers[0].image == OTHER_IMAGE and live.labels["team"] == "sleep-ml"
    assert apply(load_config(overrides={**base, "image": OTHER_IMAGE}, environ={})).action == "unchanged"


def test_the_sunrise_deploy_command(fake, tmp_path):
    config = tmp_path / "cloudrun.yaml"
    config.write_text("project: sunrise-prod\nregion: europe-west1\nmemory: 8Gi\nenv:\n  SUNRISE_EXECUTOR: cloud_run\n")
    args = ["deploy", "--config", str(config), "--image", IMAGE, "--api-endpoint", fake.endpoint, "--env", "X=1"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("created projects/sunrise-prod/locations/europe-west1/jobs/sunrise-runs")
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and second.output.startswith("unchanged"), second.output
    third = runner.invoke(app, [*args, "--timeout", "600"])
    assert third.exit_code == 0 and "updated" in third.output and "timeout_s" in third.output, third.output
    bad = runner.invoke(app, ["deploy", "--config", str(config), "--api-endpoint", fake.endpoint])
    assert bad.exit_code == 2 and "missing image" in bad.output


def test_resource_variant_names_stay_valid():
    assert resource_variant_name("sunrise-runs", "4", "16Gi") == "sunrise-runs-c4-m16gi"
    assert resource_variant_name("sunrise-runs", "500m", None) == "sunrise-runs-c500m"
    long = resource_variant_name("a" * 60, "8", "32Gi")
    assert len(long) <= 63 and long.startswith("a" * 10)
