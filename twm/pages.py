"""The report pages of a run and of a sweep (``python -m twm.report ... format=html``): sections of text, tables,
figures and code, rendered as one self-contained HTML file (figures inline as base64 PNG data URIs, the style sheet
inline, no script, font or link to fetch: it opens offline from the file alone) or as Markdown.

The page content is built from plain data (``summary.json``, ``analysis.json``, the config, the rows of
``results.csv``) by :func:`run_sections` and :func:`sweep_sections`; :func:`render_html` and :func:`render_markdown`
write it out. Nothing here trains or analyses.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# what each analysis figure shows (paper figure; docs/science.md section)
FIGURE_CAPTIONS = {
    "spectrum": "Spectrum of W_hh (dots) over the eigenvalues of Φ (rings, count per angle in the boxes); "
                "paper Figs. 6 and 8B, docs/science.md §4.",
    "weights_in_basis": "Ψ* W_hh Ψ in the variable-memory basis (Algorithm 1): the shift (variable k+1 → k) and "
                        "the boundary row; paper Fig. 4, docs/science.md §5.",
    "hidden_waves": "The hidden state of one input sequence, raw (A) and in the variable-memory basis (B): the "
                    "inputs travel from variable s down to 1; paper Fig. 3, docs/science.md §5.",
    "length_generalisation": "Accuracy per output step beyond the training horizon.",
    "gradient_flow": "Input-gradient decay rate r and max|λ(W_hh)| during training; paper Fig. 5, "
                     "docs/science.md §6.",
}
STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
code { background: #f2f2f2; padding: 0 0.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
nav a { margin-right: 1em; } .scroll { overflow-x: auto; }
"""


# --------------------------------------------------------------------------------------------------------------
# Blocks and rendering (pure)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass
class Code:
    """Preformatted text (a config, a task's rule)."""

    text: str


@dataclass
class Table:
    header: list
    rows: list
    caption: str = ""


@dataclass
class Image:
    """A PNG figure (its bytes) with a caption; ``source``: where it was read from (Markdown links to it)."""

    png: bytes
    caption: str
    name: str
    source: Path | None = None


@dataclass
class Markdown:
    """A piece of Markdown made by twm itself (headings, paragraphs, ``-`` lists and ``|`` tables only)."""

    text: str


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)


def cell_text(value) -> str:
    """A value as table text: ``None`` → empty, floats to 6 significant digits, lists and dicts as JSON."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` of a PNG from its header; ``ValueError`` when the bytes are not a PNG."""
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def png_of_figure(fig) -> bytes:
    """A matplotlib figure as PNG bytes (as :mod:`twm.analysis.plots` saves them)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _inline(text: str) -> str:
    """Escaped text with Markdown's ``code`` and ``**bold**`` spans."""
    out = html.escape(text.replace("\\|", "|"), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def html_of_markdown(text: str) -> str:
    """HTML of twm's own Markdown (``#`` headings, paragraphs, ``-`` lists, ``|`` tables with a ``|---|`` rule)."""
    out, lines, i = [], text.splitlines(), 0

    def cells(line):
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            header, body = cells(block[0]), [cells(b) for b in block[2:]]
            out.append('<div class="scroll"><table><tr>' + "".join(f"<th>{_inline(c)}</th>" for c in header)
                       + "</tr>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                                           for row in body) + "</table></div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                para.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _html_block(block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Markdown):
        return html_of_markdown(block.text)
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell_text(h))}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in row) + "</tr>"
                       for row in block.rows)
        caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
        return f'<div class="scroll"><table>{caption}<tr>{head}</tr>{body}</table></div>'
    if isinstance(block, Image):
        width, height = png_size(block.png)
        data = base64.b64encode(block.png).decode("ascii")
        return (f'<figure id="figure-{html.escape(block.name)}"><img src="data:image/png;base64,{data}" '
                f'alt="{html.escape(block.caption)}" width="{width}" height="{height}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    raise TypeError(f"not a page block: {type(block).__name__}")


def render_html(title: str, sections: list[Section]) -> str:
    """One self-contained HTML document: the title, a table of contents, the sections (each ``<section id=...>``)."""
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_html_block(b) for b in s.blocks) + "</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>\n{body}\n"
            "</body></html>\n")


def render_markdown(title: str, sections: list[Section], out_path: Path) -> str:
    """The same page in Markdown, written to ``out_path``: figures link to their PNG files (relative paths)."""

    def row(values):
        return "| " + " | ".join(cell_text(v).replace("|", "\\|") for v in values) + " |"

    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Code):
                lines += ["```", block.text.rstrip("\n"), "```", ""]
            elif isinstance(block, Markdown):
                lines += [re.sub(r"^(#+)", r"\1##", block.text, flags=re.M), ""]
            elif isinstance(block, Table):
                lines += ([block.caption, ""] if block.caption else []) + [row(block.header),
                                                                          "|" + "---|" * len(block.header)]
                lines += [row(r) for r in block.rows] + [""]
            elif isinstance(block, Image) and block.source is not None:
                rel = os.path.relpath(block.source, Path(out_path).parent)
                lines += [f"![{block.name}]({rel})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# The pages
# --------------------------------------------------------------------------------------------------------------
def _pairs(data: dict, skip=()) -> Table:
    return Table(["key", "value"], [[k, v] for k, v in data.items() if k not in skip and not isinstance(v, dict)])


def task_block(task) -> list:
    """A task (:class:`twm.tasks.Task`): name, id, both label maps, what it does, and its rule per output dim
    (:func:`twm.tasks.describe`)."""
    facts = {"task": task.name, "s (history)": task.s, "d (dims)": task.d,
             "task id": None if task.task_id is None else list(task.task_id),
             "label (table notebook)": task.labels.get("table"), "label (demo)": task.labels.get("demo"),
             "about": task.about or None}
    return [_pairs({k: v for k, v in facts.items() if v is not None}),
            Text(f"The rule x[t] = f(x[t-1], ..., x[t-{task.s}]), one line per output dim:"),
            Code("\n".join(task.describe()))]


def run_sections(run_dir, state: str, summary: dict, analysis: dict | None, config_text: str, task) -> list[Section]:
    """The page of one run: what it is, its task and rule, the training summary, the analysis numbers, the figures
    (``analysis["plots"]``, read from the run folder) and the config."""
    run_dir = Path(run_dir)
    analysis = analysis or {}
    head = {"run folder": str(run_dir), "state": state, "test accuracy": summary.get("test_accuracy"),
            "analysed at": analysis.get("analysed_at")}
    sections = [Section("run", "Run", [_pairs({k: v for k, v in head.items() if v is not None})]),
                Section("task", "Task", task_block(task)),
                Section("summary", "Training summary (summary.json)", [_pairs(summary)])]
    numbers = []
    for key, title in (("spectral", "Spectrum against Φ (docs/science.md §4)"),
                       ("basis", "Variable-memory basis, Ψ* W_hh Ψ against Φ (docs/science.md §5)"),
                       ("length_generalisation", "Length generalisation"),
                       ("gradient_flow", "Gradient flow (docs/science.md §6)")):
        if analysis.get(key):
            numbers += [Markdown(f"### {title}"), _pairs(analysis[key], skip=("accuracy",))]
    sections.append(Section("analysis", "Analysis (analysis.json)", numbers or [Text("Not analysed.")]))
    figures = []
    for name, rel in (analysis.get("plots") or {}).items():
        path = run_dir / rel
        if path.exists():
            figures.append(Image(path.read_bytes(), FIGURE_CAPTIONS.get(name, name), name, path))
    sections.append(Section("figures", "Figures", figures or [Text("No figures.")]))
    sections.append(Section("config", "Config (.hydra/config.yaml)", [Code(config_text)]))
    return sections


def sweep_sections(sweep_dir, counts: dict, tasks: list, table_md: str, columns: list[str], rows: list[dict],
                   figures: list[Image], sweep_config: str, common: dict) -> list[Section]:
    """The page of a sweep: its jobs by state, the tasks and their rules, the Table-1 tables (``table_md``), the
    per-job results (the ``results.csv`` ``columns`` shown), the sweep's figures and its config (the sweep's
    ``multirun.yaml`` overrides and the config values shared by every job)."""
    sections = [Section("sweep", "Sweep", [_pairs({"sweep folder": str(sweep_dir), **counts})])]
    sections.append(Section("tasks", "Tasks", [b for task in tasks for b in [Markdown(f"### {task.name}"),
                                                                                *task_block(task)]]))
    sections.append(Section("table1", "Table 1", [Markdown(table_md.split("\n", 1)[1] if table_md.startswith("# ")
                                                           else table_md)]))
    sections.append(Section("results", "Results per job (results.csv)",
                            [Text(f"{len(rows)} jobs; every column is in results.csv beside this page."),
                             Table(columns, [[r.get(c) for c in columns] for r in rows])]))
    sections.append(Section("figures", "Figures", figures or [Text("No analysed runs.")]))
    sections.append(Section("config", "Config", [Text("The sweep (multirun.yaml):"), Code(sweep_config),
                                                 Text("Values every job shares:"), _pairs(common)]))
    return sections
