"""An interval typed by the user (`--interval`, the menu's option 3): one rule, one line."""

from __future__ import annotations

from asyncimg.constants import MIN_INTERVAL_S
from asyncimg.i18n import _


def interval_seconds(text: str) -> float:
    """A number of seconds, at least MIN_INTERVAL_S; ValueError with one line otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(_("{text!r} is not a number of seconds").format(text=text)) from None
    if not seconds >= MIN_INTERVAL_S or seconds == float("inf"):
        raise ValueError(
            _("--interval {text}: the interval must be at least {least:g} s").format(
                text=text, least=MIN_INTERVAL_S
            )
        )
    return seconds
