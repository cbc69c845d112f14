"""`orchestrator open`: a one-time link that signs you in to the running daemon's web UI."""

from __future__ import annotations

import click

from orchestrator.cli.options import load_cli_settings, settings_options


@click.command("open")
@click.option(
    "--no-browser", is_flag=True, help="Only print the link; do not try to open a browser."
)
@settings_options
def open_command(no_browser: bool) -> None:
    """Print (and open in a browser, where there is one) a sign-in link to the web UI.

    The link works once, for two minutes, and signs you in with the admin scope: it is for
    the user who runs the daemon (it comes through the daemon's control socket, which only
    that user may use). Anyone else signs in at /login with an API token.

    \b
    Example:
      orchestrator open --no-browser
    """
    from orchestrator.cli.daemonlink import ask_daemon, running_daemon
    from orchestrator.daemon.control import DaemonError

    settings = load_cli_settings()
    holder = running_daemon(settings)
    if holder is None:
        raise DaemonError(
            f"no daemon runs on {settings.state_dir}; start one with `orchestrator daemon`, "
            "then run `orchestrator open` again"
        )
    result = ask_daemon(settings, holder, {"op": "ui_link"})
    url = str(result["url"])
    click.echo(url)
    click.echo(
        f"(this link signs you in once, within {result['expires_in']:.0f} seconds)", err=True
    )
    if not no_browser:
        _open_browser(url)


def _open_browser(url: str) -> None:
    """Open `url` in the user's browser where one can be found; a quiet no-op elsewhere."""
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return  # a server with no browser: the printed link is the answer
    webbrowser.open(url, new=2)
