"""No secret in the UI: a real dagster-webserver over an instance where a night was materialized
with a PostgreSQL warehouse URL holding a password and a secret pseudonym key. The GraphQL API the
UI reads (resource details, runs with their config and tags, every event of the run, the assets'
materializations and their metadata, the instance's configuration) holds neither secret, and the
warehouse's configured values show the variable's name instead."""

from __future__ import annotations

import json
import os
import secrets

import pytest

from tests.conftest import embedded_env
from tests.support.browser import TEST_INSTANCE_YAML, DagsterWebserver

RESOURCE = """
query Resource($selector: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $selector) {
    __typename
    ... on ResourceDetails { name configuredValues { key value type } configFields { name } }
    ... on PythonError { message }
  }
}"""

RUNS = """
{ runsOrError { ... on Runs { results { runId status runConfigYaml tags { key value } } } } }"""

LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on MaterializationEvent { partition assetKey { path } metadataEntries { ...entry } }
        ... on ObservationEvent { metadataEntries { ...entry } }
        ... on ExecutionStepFailureEvent { error { message stack } }
        ... on EngineEvent { metadataEntries { ...entry } }
      }
    }
  }
}
fragment entry on MetadataEntry {
  label description
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on JsonMetadataEntry { jsonString }
  ... on PathMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
}"""

ASSETS = """
{ assetNodes { assetKey { path } description
    assetMaterializations(limit: 50) { partition metadataEntries { label description
      ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on JsonMetadataEntry { jsonString }
      ... on PathMetadataEntry { path } } } } }"""

INSTANCE = "{ instance { info runLauncher { name } } }"


@pytest.fixture(scope="module")
def platform(tmp_path_factory, postgres):
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.lib.ingest import ingest
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path_factory.mktemp("secrets")
    warehouse_url = postgres.create_database("warehouse_secrets")
    assert postgres.password in warehouse_url  # the URL holds the password, as the deployment's
    key = f"pseudonym-key-{secrets.token_hex(16)}"
    env = embedded_env(work)
    env.update({"SUNRISE_WAREHOUSE_URL": warehouse_url, "SUNRISE_PSEUDONYM_KEY": key})
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").write_text(TEST_INSTANCE_YAML)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("SUNRISE_EXECUTOR", raising=False)
        settings.use_workdir(work)
        generate_bucket(work / "bucket", 1, seed=41)
        with DagsterInstance.get() as instance:
            report = ingest(BucketResource(url=str(work / "bucket")), instance)
        assert len(report.materialized) == 1 and not report.failed, report.failed
    server_env = {k: v for k, v in os.environ.items() if k != "SUNRISE_EXECUTOR"}
    server_env.update(env)
    web = DagsterWebserver(server_env, work / "webserver.log")
    web.start()
    try:
        yield {
            "web": web,
            "night": report.materialized[0],
            "secrets": {"warehouse password": postgres.password, "pseudonym key": key},
            "run_ids": report.run_ids,
        }
    finally:
        web.stop()


def _leaks(answer: object, secret_values: dict[str, str]) -> list[str]:
    text = json.dumps(answer)
    return [name for name, value in secret_values.items() if value in text]


def test_resource_details_show_the_variable_not_the_url(platform):
    web = platform["web"]
    selector = {"repositoryLocationName": "sunrise", "repositoryName": "__repository__", "resourceName": "warehouse"}
    details = web.graphql(RESOURCE, {"selector": selector})["topLevelResourceDetailsOrError"]
    assert details["__typename"] == "ResourceDetails", details
    values = {v["key"]: v for v in details["configuredValues"]}
    assert values["url"]["type"] == "ENV_VAR" and values["url"]["value"] == "SUNRISE_WAREHOUSE_URL"
    assert not _leaks(details, platform["secrets"])
    bucket = web.graphql(RESOURCE, {"selector": {**selector, "resourceName": "bucket"}})
    assert not _leaks(bucket, platform["secrets"])


def test_runs_logs_and_metadata_hold_no_secret(platform):
    web = platform["web"]
    runs = web.graphql(RUNS)["runsOrError"]["results"]
    assert {r["runId"] for r in runs} == set(platform["run_ids"]) and all(r["status"] == "SUCCESS" for r in runs)
    assert not _leaks(runs, platform["secrets"])
    materialized = 0
    for run in runs:
        logs = web.graphql(LOGS, {"runId": run["runId"]})["logsForRun"]
        assert logs["__typename"] == "EventConnection" and logs["events"]
        materialized += sum(e["__typename"] == "MaterializationEvent" for e in logs["events"])
        assert not _leaks(logs, platform["secrets"]), run["runId"]
    assert materialized >= 12  # every asset of the night, and the validation summary
    assets = web.graphql(ASSETS)["assetNodes"]
    entries = [m for a in assets for m in a["assetMaterializations"]]
    assert any(m["partition"] == platform["night"] and m["metadataEntries"] for m in entries)
    assert not _leaks(assets, platform["secrets"])
    assert not _leaks(web.graphql(INSTANCE), platform["secrets"])


def test_the_webservers_own_log_holds_no_secret(platform):
    text = (platform["web"].log_path).read_text(errors="replace")
    assert text and not [name for name, value in platform["secrets"].items() if value in text]


def test_the_run_launcher_refuses_secrets_as_plain_execution_overrides():
    from resources.cloud_run.run_launcher import CloudRunRunLauncher

    for name in ("SUNRISE_PSEUDONYM_KEY", "SUNRISE_WAREHOUSE_URL", "DAGSTER_PG_PASSWORD"):
        with pytest.raises(ValueError, match=name) as caught:
            # Refused before anything of the launcher is used: an object stands in for it.
            CloudRunRunLauncher.execute_job(object(), "jobs/sunrise-runs", env={name: "s3cret", "OTHER": "1"})
        assert "s3cret" not in str(caught.value)
