"""`orchestrator init [PATH]`: a working project folder, from the files in `templates/`."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from orchestrator.errors import OrchestratorError

#: What `init` writes, relative to the project folder, and the template each comes from.
PROJECT_FILES: dict[str, str] = {
    "orchestrator.toml": "orchestrator.toml",
    "dags/hello.py": "hello.py",
}


def read_template(name: str) -> str:
    """A template shipped inside the package (package data, so it works from a wheel too)."""
    from importlib.resources import files

    return (files("orchestrator") / "templates" / name).read_text(encoding="utf-8")


def write_project(folder: Path, *, force: bool) -> list[Path]:
    """Write the project files into `folder`; refuse to overwrite any unless `force`."""
    targets = {folder / relative: template for relative, template in PROJECT_FILES.items()}
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise OrchestratorError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "nothing was written. Choose another folder, or pass --force to overwrite."
        )
    for path, template in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(read_template(template), encoding="utf-8")
    return list(targets)


@click.command("init")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init_command(path: Path, force: bool) -> None:
    """Create a project: a commented orchestrator.toml and a sample DAG.

    Writes PATH/orchestrator.toml (state_dir, dags_folder, slots, pools) and
    PATH/dags/hello.py, a small pipeline with a shell task and two Python tasks
    that runs as it is. PATH defaults to the current folder. Existing files are
    never overwritten unless --force is given.

    \b
    Example:
      orchestrator init my-project
    """
    for written in write_project(path, force=force):
        click.echo(f"Created {written}")
    click.echo("\nNext, try:")
    if path.resolve() != Path.cwd().resolve():
        click.echo(f"  cd {shlex.quote(str(path))}")
    click.echo("  orchestrator dags list\n  orchestrator run hello")
