"""``penny settings``: every setting with its environment variable, current value and meaning."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
from pydantic import BaseModel

from assistant.settings import Settings, get_settings, redact_url


def rows(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str, Any, str]]:
    """(dotted name, env var, value, description) for each leaf setting."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            yield from rows(value, f"{dotted}.")
            continue
        env = "PENNY_" + dotted.upper().replace(".", "__")
        shown = redact_url(value) if isinstance(value, str) else value  # e.g. a Redis password
        yield dotted, env, shown, info.description or ""


@click.command("settings")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for docs).")
def settings_cmd(markdown: bool) -> None:
    """Show every setting: name, env var, current value (from penny.toml / env / default), meaning."""
    settings: Settings = get_settings()
    table = list(rows(settings))
    if markdown:
        click.echo("| setting | env | value | meaning |\n|---|---|---|---|")
        for dotted, env, value, description in table:
            click.echo(f"| `{dotted}` | `{env}` | `{value}` | {description} |")
        return
    width = max(len(dotted) for dotted, *_ in table)
    for dotted, env, value, description in table:
        note = f"  # {description}" if description else ""
        click.echo(f"{dotted:<{width}}  = {value!s:<24} {env}{note}")
