"""Experiment outputs that are never half-written: atomic files, figures, JSON, and the `index.html` that shows them.

Every experiment writes into its `--workdir`: PNG figures, `results.json` where it has numbers, and an `index.html`
listing the figures with captions (and tables). Each write goes to a temporary file in the same folder, then
`os.replace` renames it: a killed run leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import html
import json
import os
import pathlib
import tempfile
from typing import Any, Iterator, NamedTuple, Sequence


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error remove it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Atomically write `obj` as indented JSON (numpy scalars and arrays converted)."""
    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"cannot write {type(o).__name__} to JSON")
    return write_text(path, json.dumps(obj, indent=2, default=default) + "\n")


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> pathlib.Path:
    """Atomically save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return pathlib.Path(path)


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
    return write_text(pathlib.Path(workdir) / "index.html", "\n".join(parts))
