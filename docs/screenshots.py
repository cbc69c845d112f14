"""Screenshots of the web UI for the README: `make screenshots` writes docs/screenshots/*.png.

A real daemon runs the examples in a temporary folder and is given some history the way a
person would make it, in Chromium: runs triggered from the form (one of them on a CSV
without a `target` column, so it fails), a sensor left waiting, a CSV landed for the
file-triggered DAG, and a task whose log is still streaming when its page is shot. Each page
is saved in light and dark at 1280x800. Needs /usr/bin/chromium (see tests/browserkit.py,
whose daemon and browser helpers this script shares with the browser tests).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from browserkit import (  # noqa: E402  (tests/ is not a package: it goes on the path first)
    VIEWPORT,
    ServedUi,
    chromium_missing_reason,
    launch_chromium,
    shoot,
    training_csv,
    ui_daemon,
    watch_console,
)
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

OUT = REPO / "docs" / "screenshots"
RUN_MS = 180_000  # an ml_training run on a slow machine, with room to spare

#: A task whose log is still growing when its page is shot: it trains until released.
STREAMING_DAG = """
import math
import time
from pathlib import Path

from orchestrator import DAG, task

RELEASE = Path({release!r})


@task
def fit() -> dict:
    epoch = 0
    while not RELEASE.exists() and epoch < 1000:
        epoch += 1
        loss = 0.9 * math.exp(-epoch / 12) + 0.05
        print(f"epoch {{epoch:3d}}  loss={{loss:.4f}}  val_acc={{1 - loss / 1.3:.3f}}", flush=True)
        time.sleep(0.25)
    print("early stop: validation accuracy stopped improving", flush=True)
    return {{"epochs": epoch}}


@task
def publish(fitted: dict) -> str:
    return f"published after {{fitted['epochs']}} epochs"


with DAG("long_training", description="Fit until told to stop, streaming one line per epoch"):
    publish(fit())
"""


def main() -> None:
    reason = chromium_missing_reason()
    if reason is not None:
        sys.exit(reason)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchestrator-screenshots-") as folder:
        root = Path(folder)
        streaming = STREAMING_DAG.format(release=str(root / "release"))
        with ui_daemon(root, extra_dags={"long_training.py": streaming}) as served:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport=VIEWPORT)
                console = watch_console(page)
                page.goto(served.sign_in_link())
                try:
                    failed = make_history(page, served)
                    shoot_pages(page, served, failed)
                except AssertionError:
                    print(
                        served.daemon.log_text()[-5000:], *console.errors, sep="\n", file=sys.stderr
                    )
                    raise
                browser.close()
    if console.errors:
        sys.exit("the pages logged errors:\n" + "\n".join(console.errors))
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT.relative_to(REPO)}/")


def make_history(page: Page, served: ServedUi) -> str:
    """Runs of most examples, one failed; the failed run's id."""
    bad = served.root / "data" / "no_target.csv"
    bad.write_text("height,weight\n" + "\n".join(f"{150 + i},{50 + i}" for i in range(60)) + "\n")
    trigger(page, served, "linear_chain")
    trigger(page, served, "fan_out_fan_in", conf='{"shards": 6}')
    trigger(page, served, "ml_training")
    failed = trigger(page, served, "ml_training", conf=f'{{"path": "{bad}"}}')
    trigger(page, served, "ml_training", params={"C": "0.5"})
    trigger(page, served, "ml_training_on_arrival")  # its sensor waits on data/arrivals
    trigger(page, served, "linear_chain", conf='{"rows": 12}')
    served.land_file("labelled_batch.csv", training_csv())
    page.goto(served.url + "/dags")
    for dag_id, state, count in (
        ("ml_training", "success", 2),
        ("ml_training", "failed", 1),
        ("ml_retrain_on_new_data", "success", 1),
        ("linear_chain", "success", 2),
    ):
        dots = page.locator(f"#dag-list tr[data-dag='{dag_id}'] .dot.state-{state}")
        expect(dots).to_have_count(count, timeout=RUN_MS)
    return failed


def trigger(
    page: Page,
    served: ServedUi,
    dag_id: str,
    *,
    conf: str = "",
    params: dict[str, str] | None = None,
) -> str:
    """Start a run from the DAG's trigger form, as a person would; its run id."""
    page.goto(f"{served.url}/dags/{dag_id}/trigger")
    for name, value in (params or {}).items():
        page.locator("#trigger-form").get_by_label(name, exact=True).fill(value)
    if conf:
        page.locator("#conf-json").fill(conf)
    page.locator("#trigger-submit").click()
    expect(page).to_have_url(re.compile(r"/runs/[^/?]+$"))
    return page.url.rsplit("/", 1)[1]


def shoot_pages(page: Page, served: ServedUi, failed: str) -> None:
    """Every page in light and dark; the graph coloured by the failed run."""
    trigger(page, served, "long_training")
    log_link = page.locator("#task-list tr[data-task='fit']").get_by_role("link", name="log")
    expect(log_link).to_be_visible(timeout=RUN_MS)
    log_link.click()
    expect(page.locator("#log-text")).to_contain_text("epoch  12", timeout=RUN_MS)
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, OUT / "run")
    (served.root / "release").touch()
    expect(page.locator("#run-state")).to_have_text("success", timeout=RUN_MS)
    for name, path in (
        ("home", "/"),
        ("dags", "/dags"),
        ("grid", "/dags/ml_training"),
        ("graph", f"/dags/ml_training/graph?run={failed}"),
        ("triggers", "/triggers"),
        ("events", "/events"),
    ):
        page.goto(served.url + path)
        shoot(page, OUT / name)


if __name__ == "__main__":
    main()
