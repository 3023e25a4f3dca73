"""The gallery page: one self-contained HTML file (inline CSS, thumbnails as data URIs).

The same page is written by `asyncimg gallery` and served live by `asyncimg serve`; the
live one adds a few lines of script that swap in frames as the server reports them
(server-sent events), without a reload. Every text from a record is escaped.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from asyncimg.gallery.frames import Frame, counts
from asyncimg.gallery.thumbs import CHARACTER_BOX, FRAME_BOX, Thumbnails
from asyncimg.i18n import N_, _, language
from asyncimg.lifecycle.explain import message_of
from asyncimg.store.states import TaskState

#: How a frame's image is linked: a relative file path (static page) or a server URL.
Linker = Callable[[Frame], str | None]

_PLACEHOLDER = {
    TaskState.PENDING: N_("queued"),
    TaskState.UNCONFIRMED: N_("outcome unknown"),
    TaskState.SUBMITTED: N_("submitted"),
    TaskState.PROCESSING: N_("generating…"),
    TaskState.FAILED: N_("failed"),
    TaskState.COMPLETED: N_("image missing"),
}

_SUMMARY_ORDER = (
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.UNCONFIRMED,
    TaskState.PROCESSING,
    TaskState.SUBMITTED,
    TaskState.PENDING,
)

_CSS = """
:root { color-scheme: light; --bg: #f4f2ee; --card: #fff; --ink: #222; --dim: #6b6b6b;
  --ok: #2e7d32; --bad: #c62828; --wait: #8a6d00; --line: #e2ded6; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, "Noto Sans CJK SC", "PingFang SC", sans-serif;
  background: var(--bg); color: var(--ink); }
header { padding: 16px 24px; border-bottom: 1px solid var(--line); background: #fbfaf7; }
h1 { margin: 0 0 4px; font-size: 20px; }
.summary span { margin-right: 14px; }
.summary .n-failed { color: var(--bad); font-weight: 600; }
.summary .n-completed { color: var(--ok); }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
  gap: 16px; padding: 20px 24px; }
.frame { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  overflow: hidden; display: flex; flex-direction: column; }
.frame.failed { border: 2px solid var(--bad); }
.frame.unconfirmed { border: 2px dashed var(--wait); }
.shot { display: flex; align-items: center; justify-content: center; height: 320px;
  background: #ece9e2; }
.shot img { max-width: 100%; max-height: 320px; display: block; }
.placeholder { color: var(--dim); font-size: 15px; text-align: center; padding: 8px; }
.frame.failed .placeholder { color: var(--bad); font-weight: 600; }
.meta { padding: 8px 10px 10px; display: flex; flex-direction: column; gap: 4px; }
.top { display: flex; justify-content: space-between; gap: 6px; align-items: baseline; }
.fid { font-weight: 600; overflow-wrap: anywhere; }
.badge { font-size: 12px; padding: 1px 7px; border-radius: 10px; background: #eee;
  white-space: nowrap; }
.badge.completed { background: #e3f1e4; color: var(--ok); }
.badge.failed { background: #fbe4e4; color: var(--bad); }
.badge.pending, .badge.submitted, .badge.processing { background: #f6efd5; color: var(--wait); }
.prompt { overflow-wrap: anywhere; }
.style, .task, .path { color: var(--dim); font-size: 12px; overflow-wrap: anywhere; }
.chars { display: flex; gap: 4px; flex-wrap: wrap; }
.chars img { width: 40px; height: 40px; object-fit: cover; border-radius: 4px;
  border: 1px solid var(--line); }
.chars .nochar { font-size: 11px; color: var(--bad); }
.error { color: var(--bad); overflow-wrap: anywhere; }
.hint { color: var(--dim); font-size: 12px; }
.fix { display: block; font: 12px/1.4 ui-monospace, monospace; background: #f6f6f6;
  border: 1px solid var(--line); border-radius: 4px; padding: 4px 6px; overflow-wrap: anywhere;
  user-select: all; }
footer { padding: 0 24px 20px; color: var(--dim); font-size: 12px; }
"""

_LIVE_SCRIPT = """
(function () {
  var main = document.querySelector("main");
  var status = document.getElementById("live-status");
  var source = new EventSource("events");
  source.addEventListener("update", function (event) {
    var update = JSON.parse(event.data);
    Object.keys(update.cards).forEach(function (key) {
      var entry = update.cards[key];
      var old = document.getElementById("f-" + key);
      if (old && old.getAttribute("data-v") === entry[0]) return;
      var t = document.createElement("template");
      t.innerHTML = entry[1];
      var card = t.content.firstElementChild;
      if (old) old.replaceWith(card); else main.appendChild(card);
    });
    var wanted = {};
    update.order.forEach(function (key) {
      wanted[key] = true;
      var card = document.getElementById("f-" + key);
      if (card) main.appendChild(card);
    });
    Array.prototype.slice.call(main.children).forEach(function (card) {
      if (!wanted[card.getAttribute("data-key")]) card.remove();
    });
    document.getElementById("summary").innerHTML = update.summary;
    status.textContent = WORDS.updated.replace("{time}", new Date().toLocaleTimeString());
    document.body.setAttribute("data-version", String(update.version));
  });
  source.onerror = function () { status.textContent = WORDS.reconnecting; };
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def placeholder(frame: Frame, say: Callable[[str], str] = _) -> str:
    """What stands in for a frame's image: where the frame stands, or which machine holds
    the image of a frame made on another machine of a shared store (`say` translates)."""
    if frame.elsewhere is not None:
        return say(N_("image on machine {machine}")).format(machine=frame.elsewhere)
    return say(_PLACEHOLDER[frame.status])


def summary_html(frames: Sequence[Frame]) -> str:
    """The counts line: how many frames, and how many in each state that has any."""
    every = _("{count} frames").format(count=len(frames))
    parts = [f'<span class="n-all">{_e(every)}</span>']
    found = counts(frames)
    for state in _SUMMARY_ORDER:
        if found[state]:
            shown = _("{count} {status}").format(count=found[state], status=_(state.value))
            parts.append(f'<span class="n-{state.value}">{_e(shown)}</span>')
    return "".join(parts)


def card_html(frame: Frame, thumbs: Thumbnails, link: Linker) -> str:
    """One frame's card. Its `data-v` is a hash of the card, so the live page can skip
    cards it already shows."""
    record = frame.record
    status = record.status.value
    uri = thumbs.uri(frame.image, FRAME_BOX) if frame.image is not None else None
    if uri is not None:
        img = f'<img class="thumb" src="{uri}" alt="{_e(frame.frame_id)}">'
        href = link(frame)
        shot = f'<a href="{_e(href)}">{img}</a>' if href else img
    else:
        shot = f'<div class="placeholder">{_e(placeholder(frame))}</div>'
    chars = []
    for given, path in zip(record.character_images, frame.references, strict=False):
        char_uri = thumbs.uri(path, CHARACTER_BOX)
        if char_uri is None:
            missing = _("missing: {name}").format(name=given)
            chars.append(f'<span class="nochar" title="{_e(given)}">{_e(missing)}</span>')
        else:
            chars.append(f'<img class="char" src="{char_uri}" title="{_e(given)}" alt="">')
    rows = [
        f'<div class="top"><span class="fid">{_e(frame.frame_id)}</span>'
        f'<span class="badge {status}">{_e(_(status))}</span></div>',
        f'<div class="prompt">{_e(record.prompt)}</div>',
    ]
    if record.style:
        style = _("style: {style}").format(style=record.style)
        rows.append(f'<div class="style">{_e(style)}</div>')
    if chars:
        rows.append(f'<div class="chars">{"".join(chars)}</div>')
    rows.append(f'<div class="path">{_e(record.output_path)}</div>')
    if record.task_id:
        task = _("task {id}").format(id=record.task_id)
        rows.append(f'<div class="task">{_e(task)}</div>')
    error = _explained(frame)
    if error and record.status in (TaskState.FAILED, TaskState.UNCONFIRMED):
        rows.append(f'<div class="error">{_e(error)}</div>')
        if frame.hint:
            rows.append(f'<div class="hint">{_e(_(frame.hint))}</div>')
    elif error:
        note = _("last note: {error}").format(error=error)
        rows.append(f'<div class="task">{_e(note)}</div>')
    if frame.fix:
        rows.append(f'<code class="fix">{_e(frame.fix)}</code>')
    body = f'<div class="shot">{shot}</div><div class="meta">{"".join(rows)}</div></article>'
    version = hashlib.sha1(body.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]
    return (
        f'<article class="frame {status}" id="f-{_e(frame.key)}" data-key="{_e(frame.key)}" '
        f'data-status="{status}" data-v="{version}">{body}'
    )


def _explained(frame: Frame) -> str | None:
    """The frame's last error, with a plain explanation first outside English."""
    error = frame.record.last_error
    if frame.error is None or error is None:
        return frame.error
    return message_of(error.code, error.kind, frame.error)


def card_version(card: str) -> str:
    """The `data-v` of a card made by :func:`card_html`."""
    start = card.index('data-v="') + len('data-v="')
    return card[start : card.index('"', start)]


def render_page(
    frames: Sequence[Frame],
    thumbs: Thumbnails,
    *,
    title: str,
    link: Linker,
    live: bool = False,
    now: float | None = None,
) -> str:
    """The whole page."""
    cards = "\n".join(card_html(f, thumbs, link) for f in frames)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    footer = (
        f'<span id="live-status">{_e(_("live: connecting…"))}</span>'
        if live
        else _e(_("written {time} by asyncimg gallery").format(time=stamp))
    )
    script = f"<script>{_live_words()}{_LIVE_SCRIPT}</script>" if live else ""
    lang = "zh-CN" if language() == "zh" else "en"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f'<body data-version="0"><header><h1>{_e(title)}</h1>'
        f'<div class="summary" id="summary">{summary_html(frames)}</div></header>'
        f"<main>\n{cards}\n</main><footer>{footer}</footer>{script}</body></html>\n"
    )


def _live_words() -> str:
    """The live script's words in the current language (JSON, safe inside <script>)."""
    words = {"updated": _("live: updated {time}"), "reconnecting": _("live: reconnecting…")}
    return "var WORDS = " + json.dumps(words).replace("<", "\\u003c") + ";"


def file_linker(page: Path) -> Linker:
    """Links from a page written at `page` to each image, relative so the folder can move."""
    folder = page.parent.absolute()

    def link(frame: Frame) -> str | None:
        if frame.image is None:
            return None
        try:
            relative = os.path.relpath(frame.image.absolute(), folder)
        except ValueError:
            return frame.image.absolute().as_uri()
        return urllib.parse.quote(Path(relative).as_posix())

    return link
