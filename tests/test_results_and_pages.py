"""``results.csv`` for any sweep (``twm.results``) and the self-contained HTML pages of a run and a sweep
(``twm.pages``, ``python -m twm.report ... format=html``), on one tiny sweep of five jobs: two completed (different
task sizes, one with a gradient probe), one failed, one unfinished, one never started (no folder)."""

import base64
import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from tests.conftest import TINY, compose_train
from twm.analyze import AnalyzeOptions, analyze_sweep
from twm.pages import html_of_markdown, png_size
from twm.report import ReportError, run_from_config, write_report, write_run_report
from twm.results import ANALYSIS_COLUMNS, SUMMARY_COLUMNS
from twm.run.folder import RunFolder, write_json
from twm.tasks import describe, get_task

ROOT = Path(__file__).resolve().parents[1]
FAST = AnalyzeOptions(length_horizon=30, length_batches=1, plots=False)  # the run pages draw their own


def _train(out, extra=()):
    from twm.train.pipeline import train

    train(compose_train(TINY + list(extra), out))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    _train(root / "0", ["seed=3", "callbacks=grad_probe", "callbacks.grad_probe.every_n_steps=5"])
    _train(root / "1", ["seed=4", "task.s=3", "task.d=3", "model.hidden_size=8"])
    _train(root / "2", ["seed=5"])
    failed = RunFolder(root / "2").read_summary() | {"status": "failed", "error": "boom"}
    write_json(root / "2" / "summary.json", failed)
    _train(root / "3", ["seed=6"])
    (root / "3" / "summary.json").unlink()
    OmegaConf.save({"hydra": {"sweeper": {"params": {"seed": "3,4,5,6,7"}}, "overrides": {"task": []}}},
                   root / "multirun.yaml")  # five jobs: job 4 never got a folder
    analyze_sweep(root, FAST)
    return root


def _read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]], rows


def test_results_csv_has_one_row_per_job_whatever_its_state(sweep):
    header, rows, raw = _read(sweep / "results.csv")
    assert len(set(header)) == len(header) and all(len(r) == len(header) for r in raw)  # rectangular, plain
    assert [(r["job"], r["state"]) for r in rows] == [
        ("0", "completed"), ("1", "completed"), ("2", "failed"), ("3", "interrupted"), ("4", "missing")]
    assert [r["analysis"] for r in rows] == ["ok", "ok", "", "", ""] and rows[2]["reason"] == "boom"
    # the config as each job was launched, flattened; a key that varies (the probe) is there, paths are not
    assert [r["seed"] for r in rows] == ["3", "4", "5", "6", ""]
    assert [r["model.hidden_size"] for r in rows[:4]] == ["16", "8", "16", "16"]
    assert [r["task.s"] for r in rows[:4]] == ["4", "3", "4", "4"] and rows[0]["curriculum.ladder"] == "[2, 4, 8]"
    assert rows[0]["callbacks.grad_probe.every_n_steps"] == "5" and rows[1]["callbacks.grad_probe.every_n_steps"] == ""
    assert not [c for c in header if c.startswith(("paths.", "hydra.")) or c.endswith("save_dir")]
    assert "trainer.max_steps" in header and "logger.csv.name" not in header  # main keys; constant extras left out
    # the summary and the analysis of each completed job, as its own files hold them
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        analysis = json.loads((sweep / job / "analysis.json").read_text())
        row = rows[int(job)]
        assert float(row["summary.test_accuracy"]) == summary["test_accuracy"]
        assert row["summary.task_id"] == json.dumps(summary["task_id"])
        assert row["spectral.n_theory"] == str(analysis["spectral"]["n_theory"])
        assert row["basis.n_kept"] == str(analysis["basis"]["n_kept"])
        assert row["length_generalisation.horizon"] == "30"
    assert rows[0]["spectral.n_theory"] == "16" and rows[1]["spectral.n_theory"] == "9"  # s*d of each task
    gf = json.loads((sweep / "0" / "analysis.json").read_text())["gradient_flow"]
    assert float(rows[0]["gradient_flow.decay_rate_end"]) == gf["decay_rate_end"]
    assert rows[1]["gradient_flow.decay_rate_end"] == ""  # no probe in job 1
    assert rows[2]["summary.status"] == "failed" and rows[2]["spectral.error"] == ""


def test_results_csv_columns_are_documented():
    doc = (ROOT / "docs" / "results.md").read_text()
    for column in ("job", "state", "reason", "analysis", *SUMMARY_COLUMNS, *ANALYSIS_COLUMNS):
        assert f"`{column}`" in doc, column


def test_a_chunk_does_not_write_results_but_the_report_does(sweep, tmp_path):
    shutil.copytree(sweep, tmp_path / "s", ignore=shutil.ignore_patterns("results.csv"))
    analyze_sweep(tmp_path / "s", FAST, chunk=0, n_chunks=2)
    assert not (tmp_path / "s" / "results.csv").exists()
    paths = write_report(tmp_path / "s", tmp_path / "out", FAST, analyze_missing=False)
    assert paths["results"] == tmp_path / "out" / "results.csv"
    assert _read(paths["results"])[2] == _read(sweep / "results.csv")[2]


class _Page(HTMLParser):
    """The section ids, images and external references of an HTML page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.external, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs)
        if tag in ("script", "link", "iframe") or any(str(v).startswith(("http:", "https:", "//")) for v in
                                                       attrs.values() if v):
            self.external.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(Path(path).read_text())
    return page


def _pngs(page: _Page) -> list[tuple[int, int]]:
    sizes = []
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix):], validate=True)
        pixels = imread(io.BytesIO(png), format="png")  # the whole image decodes
        sizes.append((pixels.shape[1], pixels.shape[0]))
        assert (int(img["width"]), int(img["height"])) == sizes[-1] == png_size(png)
        assert pixels[..., :3].std() > 0.05  # not a blank image
    return sizes


def test_run_page_is_self_contained(sweep, tmp_path):
    path = write_run_report(sweep / "0", tmp_path, FAST)
    page = _parse(path)
    assert page.sections == ["run", "task", "summary", "analysis", "figures", "config"] and not page.external
    sizes = _pngs(page)
    assert len(sizes) == 5 and all(w >= 400 and h >= 300 for w, h in sizes)  # every analysis figure, inline
    text = "".join(page.text)
    assert all(line in text for line in describe(get_task("repeat_copy", 4, 4).F, 4))  # the task's rule
    assert "seed: 3" in text and "test_accuracy" in text and "support_match" in text and "decay_rate_end" in text
    md = write_run_report(sweep / "0", tmp_path, FAST, format="md").read_text()
    assert "## Figures" in md and "![spectrum](" in md and "x[t][0] = x[t-4][0]" in md


def test_sweep_page_is_self_contained(sweep, tmp_path):
    paths = run_from_config(OmegaConf.create({"sweep_dir": str(sweep), "out_dir": str(tmp_path), "format": "html",
                                              "length_horizon": 30, "length_batches": 1, "analyze_missing": False}))
    assert set(paths) == {"csv", "md", "json", "results", "html"}
    page = _parse(paths["html"])
    assert page.sections == ["sweep", "tasks", "table1", "results", "figures", "config"] and not page.external
    sizes = _pngs(page)
    assert len(sizes) == 2 and all(w >= 400 and h >= 250 for w, h in sizes)
    text = "".join(page.text)
    assert "Reproduced vs published" in text and "x[t][2] = x[t-3][2]" in text  # Table 1 and both tasks' rules
    assert "5 jobs" in text and "missing" in text and "seed: 3,4,5,6,7" in text
    with pytest.raises(ReportError, match="format='pdf'"):
        run_from_config(OmegaConf.create({"sweep_dir": str(sweep), "format": "pdf"}))
    with pytest.raises(ReportError, match="both were given"):
        run_from_config(OmegaConf.create({"sweep_dir": str(sweep), "run_dir": str(sweep / "0")}))


def test_markdown_tables_become_html_tables():
    out = html_of_markdown("# T\n\nSome `x` text\nmore.\n\n| a | b \\| c |\n|---|---|\n| 1 | 2 |\n\n- one\n- two")
    assert out == ("<h2>T</h2>\n<p>Some <code>x</code> text more.</p>\n<div class=\"scroll\"><table><tr><th>a</th>"
                   "<th>b | c</th></tr><tr><td>1</td><td>2</td></tr></table></div>\n<ul><li>one</li><li>two</li></ul>")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const out = document.createElement("pre");
  out.id = "twm-browser-check";
  out.textContent = JSON.stringify(images);
  document.body.appendChild(out);
});
</script>"""


def rendered_images(page: Path) -> list:
    """Load a copy of ``page`` in headless Chromium with a script that records, once the page has loaded, each
    image's ``[complete, naturalWidth, naturalHeight]``; returns that list (the browser decoded every image it
    reports with a nonzero size)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={Path(tmp) / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
             probe.as_uri()], capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": tmp})
    dom = proc.stdout
    start = dom.find('<pre id="twm-browser-check">')
    assert start >= 0, proc.stderr[-2000:]
    return json.loads(dom[start:].split(">", 1)[1].split("</pre>", 1)[0])


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_pages_render_every_figure_in_headless_chromium(sweep, tmp_path):
    run_page = write_run_report(sweep / "0", tmp_path / "run", FAST)
    sweep_page = write_report(sweep, tmp_path / "sweep", FAST, analyze_missing=False, format="html")["html"]
    for page, expected in ((run_page, 5), (sweep_page, 2)):
        images = rendered_images(page)
        sizes = [png_size(base64.b64decode(img["src"].split(",", 1)[1])) for img in _parse(page).images]
        assert len(images) == expected == len(sizes)
        assert [(w, h) for _, w, h in images] == sizes and all(complete for complete, _, _ in images)
