"""HTML pages: one self-contained file each (inline style, SVG, script and image data; nothing
fetched), readable from 800 px up without sideways scrolling.

The rules that keep every text inside its box: numbers, headings and single words never
wrap and are short; names wrap where they have a break (after - _ / .); running text wraps,
breaking a long word (a path) where it must; tables are as wide as the page at most;
preformatted text wraps.
"""

from __future__ import annotations

import html
import re
from typing import Any, Iterable, Sequence

BASE_STYLE = """
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;max-width:100%}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px}h3{font-size:14px;margin:12px 0 4px}
p,li,dd,dt,h1,h2,h3,code,summary,figcaption{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:8px 0;max-width:100%}
th,td{padding:3px 6px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top;
      overflow-wrap:break-word}
th{background:#f3f3f3;font-weight:600}
td.num,th.num{text-align:right}td.num{white-space:nowrap}
.neg{color:#c62828}.pos{color:#2e7d32}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:4px 0;font:12px/1.35 ui-monospace,monospace;
    background:#f7f7f7;padding:6px 8px;border-radius:3px}
code{font:12px ui-monospace,monospace}
svg{max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif}
.thumbs{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}
.thumbs figure{margin:0;width:112px}.thumbs img{display:block;border:1px solid #ccc}
.thumbs figcaption{font-size:11px;color:#444}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


LONGEST_PIECE = 20  # characters a word is broken into, when it has no better place to break


def _pieces(word: str) -> str:
    parts = re.split(r"(?<=[-_/.])", word)  # after - _ / . first (names, runs, paths)
    chunks = [part[i:i + LONGEST_PIECE] for part in parts if part
              for i in range(0, len(part), LONGEST_PIECE)]
    return "<wbr>".join(esc(chunk) for chunk in chunks)


def breakable(text: Any) -> str:
    """Escaped text where a long word may break (<wbr>): after - _ / . and, in a longer run
    without those, every LONGEST_PIECE characters; spaces stay the only breaks of prose."""
    return "".join(_pieces(part) if part.strip() else esc(part) for part in re.split(r"(\s+)", str(text)))


def page(title: str, body: str, style: str = "", script: str = "") -> str:
    """The whole document: `body` under `title`, with the base style and `style` inline."""
    js = f"<script>{script}</script>" if script else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{BASE_STYLE}{style}</style></head><body>
{body}
{js}</body></html>
"""


def signed_class(text: str) -> str:
    """neg/pos for a signed number's text, "" for zero, unsigned or missing numbers."""
    if text.startswith("-") and text != "-":
        return "neg"
    return "pos" if text.startswith("+") and text.strip("+0.") else ""


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: int = 1,
          raw: Sequence[int] = ()) -> str:
    """A table whose first `text_columns` columns are text (wrapping) and the rest numbers;
    cells of the columns in `raw` are HTML already, the rest is escaped."""
    ths = "".join(f"<th>{esc(h)}</th>" if i < text_columns else f'<th class="num">{esc(h)}</th>'
                  for i, h in enumerate(head))
    body = []
    for row in rows:
        tds = []
        for i, cell in enumerate(row):
            text = cell if i in raw else breakable(cell) if i < text_columns else esc(cell)
            if i < text_columns:
                tds.append(f"<td>{text}</td>")
            else:
                sign = signed_class(str(cell))
                tds.append(f'<td class="num {sign}">{text}</td>' if sign else f'<td class="num">{text}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(body)}</tbody></table>"
