"""`python -m deploy.containers`: the platform in containers (see `./dev containers --help`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from deploy.containers import images, stack

app = typer.Typer(help="Build and try the platform's container images.", no_args_is_help=True, add_completion=False)


@app.command()
def check(
    image_source: Annotated[
        str, typer.Option("--images", help="auto (official when all are present), official, or standins")
    ] = "auto",
    keep: Annotated[bool, typer.Option(help="Leave the stack up (and its env file) for a look")] = False,
) -> None:
    """Build every image, bring the stack up, load the demo, try it through the containers, take it down."""
    if image_source not in {"auto", "official", "standins"}:
        msg = "--images is auto, official or standins"
        raise typer.BadParameter(msg)
    try:
        report = stack.run(image_source, keep=keep)
    except RuntimeError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
    print("\n".join(report.lines()))


@app.command()
def wheels() -> None:
    """Download the runtime lock's wheels (hash-checked) into .cache/wheels, where the image build reads them."""
    print(images.wheels())


if __name__ == "__main__":
    app()
