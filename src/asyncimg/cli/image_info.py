"""`asyncimg show FILE` for an image: the provenance asyncimg wrote inside it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from asyncimg.i18n import _
from asyncimg.lifecycle import provenance


def show_image(path: Path) -> bool:
    """`asyncimg show FILE` for an image: print what is inside it. False when `path` is not
    an image file (the caller then looks it up among the records)."""
    try:
        fields = provenance.read(path)
    except (OSError, ValueError):
        return False
    if not fields:
        click.echo(_("{path}: no asyncimg provenance in this image").format(path=path))
        return True
    width = max(len(k) for k in fields)
    click.echo(f"{path}:")
    for key, value in fields.items():
        if key == "references":
            value = _references(value)
        click.echo(f"  {key.ljust(width)}  {value}")
    return True


def _references(value: str) -> str:
    try:
        refs = json.loads(value)
        return "; ".join(f"{r['file']} (sha256 {r['sha256']})" for r in refs)
    except (ValueError, KeyError, TypeError):
        return value
