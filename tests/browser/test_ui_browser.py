"""The web UI in Chromium, on a real daemon: sign-in, triggering, live runs and logs, events.

Every wait is Playwright's `expect` under a deadline: the page changes when the daemon's
stream says so, and the tests never reload to see it. Each test also screenshots the pages
it visits in light and dark, and fails on any console error (a CSP violation is one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browserkit import VIEWPORT, ServedUi, Tab, is_png, shoot, training_csv, watch_console
from playwright.sync_api import Browser, expect

pytestmark = pytest.mark.slow

RUN_SECONDS = 120  # a whole ml_training run on a busy 2-core machine, with room to spare
LIVE_MS = RUN_SECONDS * 1000
ML_TASKS = ("ingest", "validate", "preprocess", "train", "evaluate", "deploy")


def mark_page(tab: Tab) -> None:
    """Tag the loaded document: the tag survives live swaps but not a reload or navigation."""
    tab.page.evaluate("window.loadedOnce = true")


def still_same_page(tab: Tab) -> bool:
    return bool(tab.page.evaluate("window.loadedOnce === true"))


def assert_clean(tab: Tab, shots: list) -> None:
    assert tab.console.errors == [], tab.console.errors
    assert shots and all(is_png(path) for path in shots), shots


def test_a_one_time_link_signs_in_once(browser: Browser, served: ServedUi, tmp_path: Path) -> None:
    """`orchestrator open`'s link lands on the home page signed in; a second use is refused."""
    link = served.sign_in_link()
    mine, stranger = browser.new_context(viewport=VIEWPORT), browser.new_context()
    try:
        page = mine.new_page()
        console = watch_console(page)
        page.goto(link)
        expect(page).to_have_url(served.url + "/")
        expect(page.locator(".who")).to_have_text(re.compile(r"admin\s+·\s+local"))
        expect(page.get_by_role("navigation")).to_contain_text("DAGs")
        shots = shoot(page, tmp_path / "home")
        again = stranger.new_page()
        again.goto(link)
        expect(again.get_by_role("alert")).to_contain_text("used already")
        expect(again.locator(".who")).to_have_count(0)
    finally:
        mine.close()
        stranger.close()
    assert console.errors == [], console.errors
    assert all(is_png(path) for path in shots), shots


def test_the_trigger_form_starts_a_run_that_turns_green_without_a_reload(tab: Tab) -> None:
    page = tab.page
    shots = tab.shoot("home")
    page.get_by_role("link", name="DAGs", exact=True).click()
    expect(page.locator("#dag-list tr[data-dag='ml_training']")).to_be_visible()
    shots += tab.shoot("dags")

    tab.go("/dags/ml_training/trigger")
    form = page.locator("#trigger-form")
    defaults = {"data_dir": "data", "registry_dir": "models", "C": "1.0", "seed": "7"}
    for name, value in defaults.items():
        expect(form.get_by_label(name, exact=True)).to_have_value(value)
    expect(form.get_by_label("seed", exact=True)).to_have_attribute("type", "number")
    expect(form.get_by_label("C", exact=True)).to_have_attribute("step", "any")
    expect(form.get_by_label("metric", exact=True)).to_have_value("f1")
    page.locator("#trigger-submit").click()

    expect(page).to_have_url(re.compile(r"/runs/[^/?]+$"))
    mark_page(tab)
    state = page.locator("#run-state")
    expect(state).not_to_have_text("success")  # it is queued or running as the page opens
    expect(state).to_have_text("success", timeout=LIVE_MS)
    badges = page.locator("#task-list tbody tr[data-task] .badge")
    expect(badges).to_have_text(["success"] * len(ML_TASKS), timeout=LIVE_MS)
    assert still_same_page(tab), "the run page was reloaded instead of updated in place"
    shots += tab.shoot("run")

    tab.go("/dags/ml_training")
    expect(page.locator("#grid tbody td.c-success").first).to_be_visible()
    shots += tab.shoot("grid")
    tab.go("/dags/ml_training/graph")
    expect(page.locator("svg").first).to_be_visible()
    shots += tab.shoot("graph")
    assert_clean(tab, shots)


def test_a_running_task_log_streams_into_the_open_page(tab: Tab) -> None:
    page = tab.page
    tab.go("/dags/slow_logger/trigger")
    page.locator("#trigger-submit").click()
    expect(page).to_have_url(re.compile(r"/runs/[^/?]+$"))
    log_link = page.locator("#task-list tr[data-task='count_slowly']").get_by_role(
        "link", name="log"
    )
    expect(log_link).to_be_visible(timeout=LIVE_MS)  # it appears once the task has a try
    log_link.click()
    expect(page).to_have_url(re.compile(r"\?task=count_slowly"))
    mark_page(tab)

    log = page.locator("#log-text")
    first = log.text_content() or ""
    assert "released" not in first
    shown = [int(n) for n in re.findall(r"tick (\d{4})", first)]
    later = f"tick {max(shown, default=-1) + 2:04d}"  # printed after the page was served
    expect(log).to_contain_text(later, timeout=LIVE_MS)
    expect(page.locator("#log-state")).to_have_text("running")
    shots = tab.shoot("run-log")

    (tab.served.root / "release").touch()
    expect(log).to_contain_text("released", timeout=LIVE_MS)
    expect(page.locator("#run-state")).to_have_text("success", timeout=LIVE_MS)
    assert still_same_page(tab), "the log came from a reload, not from the stream"
    text = log.text_content() or ""
    ticks = re.findall(r"tick (\d{4})", text)
    assert ticks == sorted(set(ticks)), "a line of the log was shown twice or out of order"
    assert_clean(tab, shots)


def test_a_csv_landing_shows_as_an_event_that_links_to_its_run(tab: Tab) -> None:
    page = tab.page
    page.get_by_role("link", name="Triggers", exact=True).click()
    source = page.locator("#run-triggers tr[data-dag='ml_retrain_on_new_data']")
    expect(source).to_contain_text("data/incoming")
    expect(source).to_contain_text("watching")
    shots = tab.shoot("triggers")

    page.get_by_role("link", name="Events", exact=True).click()
    mark_page(tab)
    tab.served.land_file("batch.csv", training_csv())
    event = page.locator("#events tbody tr[data-event]").filter(has_text="ml_retrain_on_new_data")
    run_link = event.locator("a.run-link")
    expect(run_link).to_be_visible(timeout=LIVE_MS)  # the open page shows it as it happens
    expect(event).to_contain_text("batch.csv")
    assert still_same_page(tab)
    shots += tab.shoot("events")

    run_id = run_link.get_attribute("href")
    run_link.click()
    expect(page).to_have_url(tab.served.url + str(run_id))
    expect(page.locator("#run-state")).to_be_visible()
    expect(page.locator("#started-by")).to_contain_text("FileTrigger")
    assert_clean(tab, shots)
