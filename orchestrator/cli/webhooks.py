"""`orchestrator webhooks ...`: signed webhooks that start runs: add, list, remove.

Through the running daemon, which checks the DAG and reads the secret in its own environment
and serves `POST /hooks/NAME` at once; with none, in the store under the state directory's
lock, after the same checks made here (a variable missing from this shell only warns: the
daemon's environment may have it).
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag
    from orchestrator.store.records import WebhookRecord

_KINDS = ("github", "standard", "hmac")  # orchestrator.api.webhookconfig.KINDS, import-free


@click.group("webhooks")
def webhooks_group() -> None:
    """Add, list and remove the signed webhooks that start runs (POST /hooks/NAME)."""


# -- add ----------------------------------------------------------------------------------------


@webhooks_group.command("add")
@click.argument("name")
@click.option("--dag", "dag_id", required=True, help="The DAG each delivery starts a run of.")
@click.option("--secret-env", metavar="VAR", help="The daemon reads the secret from $VAR.")
@click.option(
    "--secret-file",
    metavar="PATH",
    help="The daemon reads the secret from this file (one per line: several for a rotation).",
)
@click.option(
    "--kind",
    type=click.Choice(_KINDS),
    default="github",
    show_default=True,
    help="How deliveries are signed: GitHub (X-Hub-Signature-256), Standard Webhooks "
    "(webhook-signature, whsec_ secrets) or a plain HMAC-SHA256 of the body in a header.",
)
@click.option("--event", "events", multiple=True, help="GitHub: only these events (repeatable).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="PATH=PATTERN",
    help="Only deliveries whose value at PATH matches the glob (repeat a PATH for "
    "alternatives). PATH: header.<Name> or a payload path such as repository.full_name.",
)
@click.option(
    "--conf",
    "conf_items",
    multiple=True,
    metavar="KEY=PATH",
    help="Put the value at PATH in the run's conf as KEY (default: the whole payload).",
)
@click.option("--rate", type=float, help="Deliveries per second it accepts [default: setting].")
@click.option("--signature-header", help="hmac: the header holding the signature [X-Signature].")
@click.option("--delivery-header", help="hmac: the header with the delivery id [Idempotency-Key].")
@click.option("--replace", is_flag=True, help="Replace a webhook of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def add_webhook(name: str, dag_id: str, replace: bool, as_json: bool, **options: Any) -> None:
    """Add a webhook: each signed delivery to POST /hooks/NAME starts a run of a DAG.

    The secret is never stored: give the environment variable or the file the daemon reads
    it from. A delivery with the same id (GitHub's X-GitHub-Delivery, webhook-id, or the
    delivery header) starts one run however often it is sent.

    \b
    Example:
      orchestrator webhooks add retrain --dag retrain --secret-env RETRAIN_SECRET \\
        --event push --filter ref=refs/heads/main --conf commit=after
    """
    from orchestrator.cli.daemonlink import daemon_or_locally, load_dag
    from orchestrator.cli.output import echo_json

    settings = load_cli_settings()
    definition = _definition(name, dag_id, options)
    request = {"op": "webhooks_add", "webhook": definition, "replace": replace}
    added, api_url, via = daemon_or_locally(
        settings,
        command=f"orchestrator webhooks add {name}",
        ask=lambda holder: (*_add_through(settings, holder, request), "daemon"),
        prepare=lambda: _check_here(settings, definition, load_dag(settings, dag_id)[0]),
        locally=lambda bag: (*_add_here(settings, request, bag), "store"),
    )
    if as_json:
        url = f"{api_url}/hooks/{name}"
        echo_json({**added, "path": f"/hooks/{name}", "url": url, "via": via})
    else:
        _print_added(_record(added["webhook"]), api_url, replace)


def _definition(name: str, dag_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The definition as the control socket takes it, from the command's options."""
    from orchestrator.api.webhookconfig import github_event_filters

    kind = options["kind"]
    _refuse_hmac_options(kind, options)
    filters = github_event_filters(kind, options["events"])
    filters += [_split(text, "--filter", "PATH=PATTERN") for text in options["filters"]]
    conf_map = dict(_split(text, "--conf", "KEY=PATH") for text in options["conf_items"])
    secret_file = options["secret_file"]
    definition = {
        "name": name,
        "dag_id": dag_id,
        "kind": kind,
        "secret_env": options["secret_env"],
        "secret_file": None if secret_file is None else os.path.abspath(secret_file),
        "filters": [list(pair) for pair in filters],
        "conf_map": conf_map,
        "rate": options["rate"],
    }
    for header in ("signature_header", "delivery_header"):
        if options[header] is not None:
            definition[header] = options[header]
    return definition


def _refuse_hmac_options(kind: str, options: dict[str, Any]) -> None:
    from orchestrator.errors import RunError

    for header in ("signature_header", "delivery_header"):
        if options[header] is not None and kind != "hmac":
            flag = "--" + header.replace("_", "-")
            raise RunError(
                f"{flag} is for --kind hmac; {kind} deliveries carry their signature and id "
                "in the headers their scheme defines"
            )


def _split(text: str, option: str, form: str) -> tuple[str, str]:
    from orchestrator.errors import RunError

    left, equals, right = text.partition("=")
    if not equals or not left.strip():
        raise RunError(f"{option} takes {form}, such as ref=refs/heads/main; got {text!r}")
    return left.strip(), right.strip()


def _record(document: dict[str, Any]) -> WebhookRecord:
    from dataclasses import replace

    from orchestrator.api.webhookconfig import webhook_from_json

    listed = ("created_at", "damaged")  # set by the store, not part of a definition
    fields = {key: value for key, value in document.items() if key not in listed}
    record = webhook_from_json(fields, created_at=float(document.get("created_at", 0.0)))
    return replace(record, damaged=document.get("damaged"))


def _add_through(
    settings: Settings, holder: Holder, request: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """Ask the daemon; it checks the DAG and the secret itself. Also where its API listens."""
    from orchestrator.cli.daemonlink import ask_daemon

    added = ask_daemon(settings, holder, request)
    api_url = ask_daemon(settings, holder, {"op": "ping"}).get("api")
    return added, str(api_url) if api_url else _configured_url(settings)


def _check_here(settings: Settings, definition: dict[str, Any], bag: DagBag) -> DagBag:
    """With no daemon: the definition and the secret, as far as this process can see them."""
    from orchestrator.api.webhookconfig import read_secrets
    from orchestrator.cli.output import warn

    record = _record(definition)
    if record.secret_env is not None and not os.environ.get(record.secret_env, "").strip():
        warn(
            f"{record.secret_env} is not set in this shell, so the secret was not checked. "
            "The daemon reads it from its own environment: set it there (its systemd unit or "
            "shell) before deliveries arrive, or they are refused."
        )
    else:
        read_secrets(record, os.environ)  # a missing file or a bad whsec_ secret fails now
    return bag


def _add_here(
    settings: Settings, request: dict[str, Any], bag: DagBag
) -> tuple[dict[str, Any], str]:
    from orchestrator.cli.tokens import registry_request

    added = registry_request(settings, request, write=True, dagbag=bag)
    return added, _configured_url(settings)


def _configured_url(settings: Settings) -> str:
    port = settings.api_port or "PORT"  # 0: the daemon picks one and logs it
    return f"http://{settings.api_host}:{port}"


def _print_added(record: WebhookRecord, api_url: str, replaced: bool) -> None:
    verb = "replaced" if replaced else "added"
    click.echo(f"{verb} webhook {record.name}: each delivery starts a run of {record.dag_id}")
    click.echo(f"  POST /hooks/{record.name}  ({api_url}/hooks/{record.name})")
    click.echo("Try it:")
    for line in _test_hint(record, f"{api_url}/hooks/{record.name}"):
        click.echo(f"  {line}")
    if record.filters:
        click.echo(
            "A delivery that does not pass the filters is answered 200 with the reason and "
            "starts nothing."
        )


def _test_hint(record: WebhookRecord, url: str) -> list[str]:
    """Shell lines that send one signed delivery, for the webhook's kind."""
    if record.kind == "standard":
        return [
            "sign a delivery with a Standard Webhooks library (e.g. `pip install "
            "standardwebhooks`: Webhook(secret).sign(msg_id, timestamp, body)) and send it",
            f"to {url} with the webhook-id, webhook-timestamp and webhook-signature headers",
        ]
    secret = (
        f'"${record.secret_env}"'
        if record.secret_env is not None
        else f'"$(head -n 1 {shlex.quote(record.secret_file or "")})"'
    )
    return [
        'body=\'{"ref": "refs/heads/main"}\'',
        f"sig=$(printf '%s' \"$body\" | openssl dgst -sha256 -hmac {secret} | sed 's/^.* //')",
        f"curl -X POST {url} -H 'Content-Type: application/json' \\",
        *(f"  -H {header} \\" for header in _hint_headers(record)),
        '  -d "$body"',
    ]


def _hint_headers(record: WebhookRecord) -> list[str]:
    """The headers of a test delivery, shell-quoted: its id and signature (and GitHub's event)."""
    delivery = "test-$(date +%s)"
    if record.kind == "hmac":
        return [
            f'"{record.delivery_header}: {delivery}"',
            f'"{record.signature_header}: $sig"',
        ]
    return [
        f"'X-GitHub-Event: {_sample_event(record)}'",
        f'"X-GitHub-Delivery: {delivery}"',
        '"X-Hub-Signature-256: sha256=$sig"',
    ]


def _sample_event(record: WebhookRecord) -> str:
    """An event the filters let through, when they name one plainly; else push."""
    from orchestrator.api.webhookconfig import GITHUB_EVENT_PATH

    for path, pattern in record.filters:
        if path == GITHUB_EVENT_PATH and not set(pattern) & set("*?[]'"):
            return pattern
    return "push"


# -- list ---------------------------------------------------------------------------------------


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_webhooks(as_json: bool) -> None:
    """List the webhooks: name, DAG, kind, where the secret is read, filters and conf.

    Never a secret: only the variable or file the daemon reads it from.

    \b
    Example:
      orchestrator webhooks list
    """
    from orchestrator.cli.daemonlink import ask_daemon, running_daemon
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.tokens import registry_request
    from orchestrator.cli.views import make_console

    settings = load_cli_settings()
    request = {"op": "webhooks_list"}
    holder = running_daemon(settings)
    if holder is not None:
        webhooks = ask_daemon(settings, holder, request)["webhooks"]
    else:
        webhooks = registry_request(settings, request, write=False)["webhooks"]
    if as_json:
        echo_json(webhooks)
    elif not webhooks:
        click.echo(
            "No webhooks yet: add one with `orchestrator webhooks add NAME --dag DAG "
            "--secret-env VAR`."
        )
    else:
        make_console().print(_webhooks_table([_record(document) for document in webhooks]))


def _webhooks_table(records: list[WebhookRecord]) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table

    from orchestrator.cli.output import damage_notes, marked_damaged

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("name", "dag", "kind", "secret from", "filters", "conf", "rate"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            marked_damaged(record.name, record.damaged),
            record.dag_id,
            record.kind,
            f"${record.secret_env}" if record.secret_env else f"file {record.secret_file}",
            "\n".join(f"{path}={pattern}" for path, pattern in record.filters) or "-",
            "\n".join(f"{key}={path}" for key, path in record.conf_map.items()) or "payload",
            "default" if record.rate is None else f"{record.rate:g}/s",
        )
    notes = damage_notes([(f"webhook {record.name}", record.damaged) for record in records])
    return Group(table, *notes)


# -- remove -------------------------------------------------------------------------------------


@webhooks_group.command("remove")
@click.argument("name")
@settings_options
def remove_webhook(name: str) -> None:
    """Remove a webhook: deliveries to POST /hooks/NAME are refused from now on.

    Runs it started are kept.

    \b
    Example:
      orchestrator webhooks remove retrain
    """
    from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally
    from orchestrator.cli.tokens import registry_request

    settings = load_cli_settings()
    request = {"op": "webhooks_remove", "name": name}
    daemon_or_locally(
        settings,
        command=f"orchestrator webhooks remove {name}",
        ask=lambda holder: ask_daemon(settings, holder, request),
        prepare=lambda: None,
        locally=lambda _: registry_request(settings, request, write=True),
    )
    click.echo(f"removed webhook {name}: deliveries to POST /hooks/{name} are now refused")
