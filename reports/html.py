"""The report as one self-contained HTML page and as markdown, from one list of blocks.

``reports.report`` builds the content as blocks (plain dicts); this module writes them out:

* ``{"kind": "h", "level": 2, "text": ..., "id": ...}``: a heading;
* ``{"kind": "p", "text": ...}``: a paragraph with light inline markup (`` `code` ``,
  ``*em*``, ``**strong**``);
* ``{"kind": "table", "headers": [...], "rows": [[...]], "row_class": [...], "align": [...]}``:
  ``row_class`` marks e.g. published rows (``"published"``), ``align`` is ``"l"``/``"r"``
  per column;
* ``{"kind": "figure", "path": Path, "caption": ...}``: a PNG; embedded in the HTML as a
  base64 data URI, linked from the markdown;
* ``{"kind": "list", "items": [...], "summary": ...}``: a bullet list, folded under
  ``summary`` in the HTML when given;
* ``{"kind": "banner", "text": ...}``: a warning that must not be missed (a synthetic corpus):
  a framed box in the HTML, a quoted paragraph in the markdown.

Table columns align ``l`` (text, wraps), ``r`` (numbers, never wrap) or ``k`` (identifiers
such as set keys, never wrap); a table with ``"class": "fields"`` is a two-column
name / value list (no header row).

The page needs nothing from outside (no scripts, fonts or image files).
"""
from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Block = Mapping[str, Any]

CSS = """
:root { --fg:#1d232b; --muted:#5b6573; --line:#dde2e8; --accent:#1f6fb4; --pub:#f6f3ea; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "DejaVu Sans", sans-serif; color:var(--fg); background:#fafbfc; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; background:#fff;
       box-shadow: 0 0 0 1px var(--line); min-height: 100vh; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 26px 0 8px; color:#27313d; }
p { margin: 8px 0; }
.meta { color: var(--muted); font-size: 13.5px; }
code { font: 12.5px/1.4 "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
       background:#f1f3f6; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
nav.toc { background:#f5f7fa; border:1px solid var(--line); border-radius:6px; padding:8px 16px;
          margin: 14px 0 6px; font-size: 14px; }
nav.toc ul { margin: 4px 0; padding-left: 18px; columns: 2; }
nav.toc a { color: var(--accent); text-decoration: none; }
.tablewrap { overflow-x: auto; margin: 10px 0 14px; }
table { border-collapse: collapse; font-size: 13px; min-width: 50%; max-width: 100%; }
td.l { overflow-wrap: anywhere; }
td.k, th.k { white-space: nowrap; }
td.k code { overflow-wrap: normal; }
table.fields td:first-child { color: var(--muted); white-space: nowrap; width: 11em; }
.banner { border: 3px solid #c0392b; background: #fdecea; color: #7b1d12; border-radius: 6px;
          padding: 12px 16px; margin: 12px 0; font-size: 15.5px; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background:#eef2f6; text-align:left; font-weight:600; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
tr.published td { background: var(--pub); color:#5a5140; font-style: italic; }
tr.best td { font-weight: 600; }
figure { margin: 14px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px;
             background:#fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
ul.plain { margin: 6px 0; padding-left: 20px; font-size: 13.5px; }
"""


def data_uri(path: str | os.PathLike) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def inline(text: str) -> str:
    """Escape text and turn `` `code` ``, ``**strong**`` and ``*em*`` into HTML.

    Example:
        >>> inline("a `b<c>` *d*")
        'a <code>b&lt;c&gt;</code> <em>d</em>'
    """
    parts = re.split(r"(`[^`]*`)", str(text))
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        esc = html.escape(part)
        esc = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc)
        esc = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", esc)
        out.append(esc)
    return "".join(out)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def _table_html(block: Block) -> str:
    headers: Sequence[str] = block["headers"]
    align: Sequence[str] = block.get("align") or ["l"] * len(headers)
    classes: Sequence[str | None] = block.get("row_class") or []
    fields = block.get("class") == "fields"
    head = "" if fields else "".join(f'<th class="{a}">{inline(h)}</th>' for h, a in zip(headers, align))
    body = []
    for i, row in enumerate(block["rows"]):
        cls = classes[i] if i < len(classes) and classes[i] else ""
        cells = "".join(f'<td class="{a}">{inline(c)}</td>' for c, a in zip(row, align))
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    cls = ' class="fields"' if fields else ""
    return (f'<div class="tablewrap"><table{cls}>{thead}'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def render_html(blocks: Iterable[Block], *, title: str) -> str:
    """One self-contained HTML page (figures embedded as data URIs), with a table of contents."""
    blocks = list(blocks)
    toc = [(b.get("id") or _anchor(b["text"]), b["text"]) for b in blocks
           if b["kind"] == "h" and b.get("level") == 2]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"]
    toc_done = False
    for b in blocks:
        kind = b["kind"]
        if kind == "h" and b.get("level") == 2 and not toc_done and len(toc) > 1:
            items = "".join(f'<li><a href="#{a}">{inline(t)}</a></li>' for a, t in toc)
            out.append(f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>')
            toc_done = True
        if kind == "h":
            level = int(b.get("level", 2))
            anchor = b.get("id") or _anchor(b["text"])
            out.append(f'<h{level} id="{html.escape(anchor)}">{inline(b["text"])}</h{level}>')
        elif kind == "p":
            cls = f' class="{b["class"]}"' if b.get("class") else ""
            out.append(f"<p{cls}>{inline(b['text'])}</p>")
        elif kind == "banner":
            out.append(f'<div class="banner" role="alert">{inline(b["text"])}</div>')
        elif kind == "table":
            out.append(_table_html(b))
        elif kind == "figure":
            alt = html.escape(b.get("caption") or Path(b["path"]).stem, quote=True)
            out.append(f'<figure><img src="{data_uri(b["path"])}" alt="{alt}">'
                       f"<figcaption>{inline(b.get('caption', ''))}</figcaption></figure>")
        elif kind == "list":
            items = "".join(f"<li>{inline(i)}</li>" for i in b["items"])
            lst = f'<ul class="plain">{items}</ul>'
            out.append(f"<details><summary>{inline(b['summary'])}</summary>{lst}</details>"
                       if b.get("summary") else lst)
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out.append("</main></body></html>")
    return "\n".join(out)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Iterable[Block], *, base: str | os.PathLike) -> str:
    """Markdown of the same blocks; figures are linked relative to ``base`` (the md's folder)."""
    out: list[str] = []
    for b in blocks:
        kind = b["kind"]
        if kind == "h":
            out += ["#" * int(b.get("level", 2)) + " " + b["text"], ""]
        elif kind == "p":
            out += [b["text"], ""]
        elif kind == "banner":
            out += ["> **!!** " + b["text"], ""]
        elif kind == "table":
            align = b.get("align") or ["l"] * len(b["headers"])
            out.append("| " + " | ".join(_md_cell(h) for h in b["headers"]) + " |")
            out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
            for row in b["rows"]:
                out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            out.append("")
        elif kind == "figure":
            rel = Path(os.path.relpath(b["path"], base)).as_posix()
            out += [f"![{b.get('caption', '')}]({rel})", "", f"*{b.get('caption', '')}*"
                    if b.get("caption") else "", ""]
        elif kind == "list":
            if b.get("summary"):
                out += [b["summary"] + ":", ""]
            out += [f"- {i}" for i in b["items"]] + [""]
    return "\n".join(out)
