"""What a data scientist sees: the Dagster UI in a real (headless) Chromium, driven by Playwright.

An instance where three nights ran and a fourth is registered but not processed, served by a real
dagster-webserver. The test checks the lineage graph reads bronze -> silver -> gold -> warehouse,
opens one night's gold materialization and finds its hypnogram picture rendered, then materializes
the fourth night from the UI (Materialize all, that night's partition) and sees the run succeed.
Screenshots go to $SUNRISE_SCREENSHOTS (default tests/artifacts/browser/), printed at the start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import embedded_env
from tests.support.browser import (
    CHROMIUM,
    REPO,
    TEST_INSTANCE_YAML,
    DagsterWebserver,
    dismiss_community_dialog,
    launch_chromium,
)

LAYERS = ("bronze", "silver", "gold", "warehouse")
UI_TIMEOUT_MS = 60_000


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def screenshots(request) -> Path:
    out = Path(os.environ.get("SUNRISE_SCREENSHOTS") or REPO / "tests" / "artifacts" / "browser")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nbrowser test screenshots: {out}")
    return out


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Four generated nights registered as partitions; the first three materialized end to end."""
    _require_chromium()
    from dagster import DagsterInstance

    from resources.bucket import BucketResource
    from sunrise_assets import settings
    from sunrise_assets.domain.anonymise import Pseudonymizer, load_key
    from sunrise_assets.domain.pairing import scan_bucket
    from sunrise_assets.domain.raw_nights import reconcile
    from sunrise_assets.lib.ingest import done_nights, run_batch
    from sunrise_assets.lib.night_registry import register
    from sunrise_assets.synthetic.generate import generate_bucket

    work = tmp_path_factory.mktemp("browser")
    env = embedded_env(work)
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").write_text(TEST_INSTANCE_YAML)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("SUNRISE_EXECUTOR", raising=False)
        settings.use_workdir(work)
        generate_bucket(work / "bucket", 4, seed=11)
        bucket = BucketResource(url=str(work / "bucket"))
        with DagsterInstance.get() as instance:
            register(reconcile(scan_bucket(bucket), bucket, Pseudonymizer(load_key())), instance)
            nights = list(instance.get_dynamic_partitions("nights"))
            assert len(nights) == 4
            _, completed, failed = run_batch(instance, nights[:3])
            assert completed == set(nights[:3]) and not failed, failed
            assert done_nights(instance) == set(nights[:3])
    server_env = {k: v for k, v in os.environ.items() if k != "SUNRISE_EXECUTOR"}
    server_env.update(env)
    return {"work": work, "env": server_env, "done": nights[:3], "new": nights[3]}


@pytest.fixture(scope="module")
def webserver(platform):
    web = DagsterWebserver(platform["env"], platform["work"] / "webserver.log")
    web.start()
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def page(webserver):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            page = context.new_page()
            page.goto(f"{webserver.url}/asset-groups")
            dismiss_community_dialog(page)  # first visit only: the choice is kept in the browser
            yield page
        finally:
            browser.close()


def test_lineage_reads_bronze_silver_gold_warehouse(page, webserver, screenshots):
    page.goto(f"{webserver.url}/asset-groups")
    groups = {g: page.locator(f'[data-tooltip="{g}"]') for g in ("raw", *LAYERS)}
    for _name, node in groups.items():
        node.first.wait_for(state="visible")
    page.wait_for_timeout(500)  # the graph animates into place
    page.screenshot(path=screenshots / "01_lineage_layers.png")

    x = {name: node.first.bounding_box()["x"] for name, node in groups.items()}
    order = sorted(x, key=x.get)
    assert order == ["raw", *LAYERS], f"left to right the graph shows {order}"
    edges = page.locator("svg path[marker-end]")
    assert edges.count() >= len(LAYERS), f"only {edges.count()} edges drawn between the groups"

    # What the UI draws the edges from: each layer feeds the next.
    nodes = webserver.graphql("{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }")["assetNodes"]
    group_of = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    links = {(group_of["/".join(d["path"])], n["groupName"]) for n in nodes for d in n["dependencyKeys"]}
    for upstream, downstream in zip(("raw", *LAYERS), LAYERS):
        assert (upstream, downstream) in links, f"no edge {upstream} -> {downstream} in {sorted(links)}"

    # Every asset on the graph (groups expanded), for the record.
    page.locator('button:has([aria-label="settings"])').last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    page.locator('button:has([aria-label="panel_show_right"])').first.click()  # fold the side navigation
    page.get_by_text("training_epochs", exact=True).first.wait_for(state="visible")
    page.wait_for_timeout(800)
    page.screenshot(path=screenshots / "02_lineage_assets.png")


def test_one_night_shows_its_hypnogram_picture_and_checks(page, webserver, platform, screenshots):
    night = platform["done"][0]
    page.goto(f"{webserver.url}/assets/psg_agreement?view=partitions&partition={night}")
    page.get_by_text("kappa_5class", exact=True).first.wait_for(state="visible")
    for name in ("psg_total_sleep_time_min", "sunalgo_total_sleep_time_min", "tst_difference_min"):
        assert page.get_by_text(name, exact=True).count() >= 1, f"{name} missing from the night's metadata"
    page.get_by_text("[Show Markdown]").first.click()
    image = page.get_by_role("dialog").locator("img")
    image.wait_for(state="visible")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    box = image.bounding_box()
    assert natural == [900, 300], natural
    assert box and box["width"] > 100 and box["height"] > 30, box
    page.screenshot(path=screenshots / "03_night_hypnogram.png")
    page.get_by_role("button", name="Close").click()

    page.goto(f"{webserver.url}/assets/bronze_psg?view=checks")
    page.get_by_text("This is a blocking asset check", exact=False).first.wait_for(state="visible")
    assert page.get_by_text("no_identifiers", exact=True).count() >= 1
    assert page.get_by_text("Passed", exact=True).count() >= 1
    page.screenshot(path=screenshots / "04_bronze_blocking_check.png")


def test_materialize_a_new_night_from_the_ui(page, webserver, platform, screenshots):
    from dagster import AssetKey, DagsterInstance

    night = platform["new"]
    page.goto(f"{webserver.url}/asset-groups")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(night)
    option = page.get_by_role("menuitem").filter(has_text=night).first
    option.click()
    page.keyboard.press("Escape")
    option.wait_for(state="hidden")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    launch.wait_for(state="visible")
    page.screenshot(path=screenshots / "05_materialize_night.png")
    launch.click()

    view = page.locator('a[href*="/runs/"]').filter(has_text="View").first
    view.wait_for(state="visible")
    run_path = view.get_attribute("href")
    start = time.monotonic()
    page.goto(f"{webserver.url}{run_path}")
    try:
        page.get_by_text("Success", exact=True).first.wait_for(state="visible", timeout=180_000)
    except Exception:  # noqa: BLE001 (any failure of the wait: keep the screenshot and the webserver log)
        page.screenshot(path=screenshots / "06_run_failed.png")
        raise AssertionError(f"the run did not succeed in 180 s; webserver log:\n{webserver.log_tail()}") from None
    assert page.get_by_text(f"partition: {night}").count() >= 1
    page.wait_for_timeout(500)
    page.screenshot(path=screenshots / "06_run_succeeded.png")
    print(f"run from the UI succeeded {time.monotonic() - start:.1f} s after launch")

    instance = DagsterInstance.from_config(platform["env"]["DAGSTER_HOME"])
    try:
        assert night in instance.get_materialized_partitions(AssetKey("training_epochs"))
        assert night in instance.get_materialized_partitions(AssetKey("psg_agreement"))
    finally:
        instance.dispose()
