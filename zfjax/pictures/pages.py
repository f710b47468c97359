"""The pages experiments write: ``index.html`` with a title, an intro, tables and the figures with captions, and
markdown tables (``results.md``). Every page is written atomically (`zfjax.files`).
"""
from __future__ import annotations

import html
import os
import pathlib
from typing import Any, NamedTuple, Sequence

import numpy as np

from zfjax import files


class Figure(NamedTuple):
    """One figure of a report: file name relative to the workdir, a title and a caption saying what one sees;
    `link` (relative too) makes the figure a link to a page it previews."""
    file: str
    title: str
    caption: str
    link: str = ""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over splits, as "mean ± std" in the paper's tables."""
    return float(np.mean(values)), float(np.std(values))


def mean_std_cell(values: Sequence[float], scale: float = 100.0) -> str:
    """"mean ± std" of `values` (in percent by default), one decimal as in the paper."""
    m, s = mean_std(values)
    return f"{scale * m:.1f} ± {scale * s:.1f}"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = lambda tag, r: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in r)  # noqa: E731
    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def write_index(workdir: str | os.PathLike, title: str, figures: Sequence[Figure], *, intro: str = "",
                tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = ()) -> pathlib.Path:
    """Atomically write `workdir/index.html`: a title, an intro, (caption, header, rows) tables, then the figures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "figure{margin:2em 0}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for caption, header, rows in tables:
        parts.append(f"<h2>{html.escape(caption)}</h2>{_html_table(header, rows)}")
    for f in figures:
        image = f"<img src='{html.escape(f.file)}' alt='{html.escape(f.title)}'>"
        if f.link:
            image = f"<a href='{html.escape(f.link)}'>{image}</a>"
        parts.append(f"<figure><h2>{html.escape(f.title)}</h2>{image}<figcaption>{html.escape(f.caption)}"
                     f"</figcaption></figure>")
    parts.append("</body></html>\n")
    return files.write_text(pathlib.Path(workdir) / "index.html", "\n".join(parts))


__all__ = ["Figure", "markdown_table", "mean_std", "mean_std_cell", "write_index"]
