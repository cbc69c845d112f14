"""The web UI in a real browser: a daemon on the examples, Chromium driven by Playwright.

```python
with ui_daemon(tmp_path, extra_dags={"slow.py": SOURCE}) as served:  # cwd = tmp_path
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        console = watch_console(page)
        page.goto(served.sign_in_link())                  # lands on the home page, signed in
        shoot(page, tmp_path / "home")                   # home-light.png and home-dark.png
        assert console.errors == []
```

Used by tests/browser/ and by docs/screenshots.py (`make screenshots`). The daemon runs
this checkout's code (`python -m orchestrator` with PYTHONPATH set to it), never the one
an editable install points at. Playwright cannot download browsers on a closed network, so
the system's Chromium is launched by path, with the flags that stop it from calling home.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crashkit import DaemonProcess, api_url, new_marker

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CHROMIUM = Path("/usr/bin/chromium")
#: Without the networking flags Chromium tries Google's services and this network refuses it.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 800}
COLOR_SCHEMES = ("light", "dark")
OPEN_COMMAND = (sys.executable, "-m", "orchestrator", "open", "--no-browser")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if CHROMIUM.exists():
        return None
    return "Chromium not found: apt-get install chromium (Debian) to run the browser tests"


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )


@dataclass
class Console:
    """What a page said on its console that a person would call broken (CSP violations too)."""

    errors: list[str] = field(default_factory=list)

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '?')})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


def watch_console(page: Page) -> Console:
    console = Console()
    page.on("console", console.on_message)
    page.on("pageerror", console.on_page_error)
    return console


def shoot(page: Page, stem: Path) -> list[Path]:
    """`<stem>-light.png` and `<stem>-dark.png` of the page as it is now (the viewport)."""
    shots = []
    for scheme in COLOR_SCHEMES:
        page.emulate_media(color_scheme=scheme)
        path = stem.with_name(f"{stem.name}-{scheme}.png")
        page.screenshot(path=str(path))
        shots.append(path)
    page.emulate_media(color_scheme="light")
    return shots


def is_png(path: Path) -> bool:
    return (
        path.is_file()
        and path.stat().st_size > len(PNG_SIGNATURE)
        and (path.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE)
    )


@dataclass
class ServedUi:
    """A daemon on a copy of examples/ in `root` (its working directory), with its UI's URL."""

    root: Path
    daemon: DaemonProcess
    url: str

    @property
    def state_dir(self) -> Path:
        return self.daemon.state_dir

    def sign_in_link(self) -> str:
        """A one-time admin link, from `orchestrator open --no-browser` as a person gets it."""
        opened = subprocess.run(
            [*OPEN_COMMAND, "--state-dir", str(self.state_dir)],
            cwd=self.root,
            env=_environment(self.root),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert opened.returncode == 0, opened.stderr
        link = opened.stdout.strip()
        assert link.startswith(f"{self.url}/login/once/"), opened.stdout
        return link

    def land_file(self, name: str, text: str) -> Path:
        """Write `text` beside data/incoming, then rename it in: a watcher sees it whole."""
        staged = self.root / "data" / f".{name}.part"
        staged.write_text(text)
        landed = self.root / "data" / "incoming" / name
        os.replace(staged, landed)
        return landed


@dataclass
class Tab:
    """A signed-in page, what its console said, and where its screenshots go."""

    page: Page
    console: Console
    served: ServedUi
    shots: Path

    def go(self, path: str) -> None:
        self.page.goto(self.served.url + path)

    def shoot(self, name: str) -> list[Path]:
        return shoot(self.page, self.shots / name)


@contextmanager
def ui_daemon(root: Path, *, extra_dags: Mapping[str, str] | None = None) -> Iterator[ServedUi]:
    """`orchestrator daemon` on examples/*.py (and `extra_dags`) copied to `root/dags`.

    The daemon's working directory is `root`, where the folders the examples watch
    (data/incoming, data/arrivals) are made. Leaving stops it with SIGTERM, and SIGKILL
    if that does not do.
    """
    dags = root / "dags"
    dags.mkdir(parents=True)
    for example in sorted(EXAMPLES.glob("*.py")):
        shutil.copy(example, dags / example.name)
    for name, source in (extra_dags or {}).items():
        (dags / name).write_text(source)
    for watched in ("incoming", "arrivals"):  # ml_training.py's file trigger and sensor
        (root / "data" / watched).mkdir(parents=True)
    with DaemonProcess(
        root / "state",
        dags,
        marker=new_marker(),
        env=_environment(root),
        log_path=root / "daemon.log",
        cwd=root,
    ) as daemon:
        try:
            yield ServedUi(root, daemon, _api_url(daemon))
        finally:
            daemon.terminate()
            try:
                daemon.wait_exit(15)
            except AssertionError:
                daemon.kill9()


def _api_url(daemon: DaemonProcess) -> str:
    """`crashkit.api_url`, on a thread of its own: it runs an event loop, and Playwright's
    sync API already runs one on this thread once a browser is up."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(api_url, daemon).result()


def _environment(root: Path) -> dict[str, str]:
    """This checkout's code on a free port; sensors may watch folders under data/ (the
    examples' `incoming_dir` is a param: untrusted input); a stop that does not wait long on
    running tasks; sign-ins not limited to one in two seconds (a test signs several in)."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "ORCHESTRATOR_API_PORT": "0",
        "ORCHESTRATOR_SHUTDOWN_GRACE": "2",
        "ORCHESTRATOR_UI_LOGIN_RATE": "100",
        "ORCHESTRATOR_ALLOWED_ROOTS": str(root / "data"),
    }


def training_csv(rows: int = 60) -> str:
    """A CSV that examples/ml_training.py trains on: numeric features and both 0/1 targets."""
    lines = ["height,weight,target"]
    for i in range(rows):
        label = i % 2
        lines.append(f"{150 + i % 7 + label * 20},{50 + i % 5 + label * 15},{label}")
    return "\n".join(lines) + "\n"
