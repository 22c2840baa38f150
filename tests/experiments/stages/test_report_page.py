"""The report as a page to look at, on a run made by hand (no training): its first screen (the
verdict table, the picture, a what-to-do line per method), a table of contents linking every
section's anchor, every table after the first screen collapsed behind a one-line summary,
inline Markdown rendered in the HTML (never literal), report.md a plain Markdown report, and a
new section one entry in the report's list."""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

import pytest

from helpers import crossed_rows, fake_run
from smoothstab.experiments.analysis.advice import advise
from smoothstab.experiments.analysis.summary import Summary
from smoothstab.experiments.analysis.sweep import table1
from smoothstab.experiments.analysis.verdicts import split, splits
from smoothstab.experiments.cli import main
from smoothstab.experiments.pages import answer as page
from smoothstab.experiments.pages.blocks import (
    Details,
    Heading,
    Paragraph,
    Section,
    Table,
    inline,
    render_html,
    render_markdown,
)
from smoothstab.experiments.rundir.advice_record import write_advice
from smoothstab.experiments.rundir.metrics_table import rows_table, write_table
from smoothstab.experiments.rundir.table1_file import table1_csv
from smoothstab.experiments.stages import report

GRID = {0.0: 0.0, 0.1: -0.05, 0.15: -0.1}  # the fake run's config: r = 0, 0.1 and Table 1's 0.15
PNG = bytes.fromhex(  # a 1x1 PNG: the page embeds what it finds
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def designed_run(tmp: Path, change: dict[float, float] = GRID) -> Path:
    """A run as the figures stage leaves it: six models' designed rows (the unit-map distance
    falls 10% by r = 0.15), its advice and Table 1, and a picture for every figure."""
    d = fake_run(tmp)
    found = crossed_rows(6, 12, change, fidelity={0.0: 0.0, 0.1: 0.1, 0.15: 0.2})
    for row in found:
        row["sigma"] = round(3 * row["r"], 6)
    write_table(d / "metrics.parquet", rows_table(found))
    summary = Summary.from_rows(found)
    advice = advise(summary, ["grad"], debiased=True, budget=10.0, measure="unit_distance")
    write_advice(d / "recommendation.json", advice)
    (d / "table1.csv").write_text(table1_csv(table1(summary, ["grad"], 0.15, {})))
    (d / "figures").mkdir(exist_ok=True)
    for name in ("answer", "tradeoff", "stability", "fidelity", "ssim_topk", "sigma_grad"):
        (d / "figures" / f"{name}.png").write_bytes(PNG)
    (d / "figures" / "grid_grad_0-1.png").write_bytes(PNG)
    return d


class Page(html.parser.HTMLParser):
    """The HTML's text outside code, the path of open elements at each element, and where the
    table of contents starts."""

    def __init__(self, text: str):
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.elements: list[tuple[str, dict, list[str]]] = []  # (tag, attrs, open tags above)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in ("img", "meta", "br"):
            self.elements.append((tag, dict(attrs), [t for t, _ in self.stack]))
            return
        self.elements.append((tag, dict(attrs), [t for t, _ in self.stack]))
        self.stack.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if not any(t in ("code", "pre", "style", "script") for t, _ in self.stack):
            self.text.append(data)


LITERAL = [re.compile(r"\*\*\S"), re.compile("`"), re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")]


def literal_markdown(text: str) -> list[str]:
    return [m[0] for p in LITERAL for m in p.finditer(text)]


def test_the_first_screen_answers_and_the_rest_is_collapsed(tmp_path):
    d = designed_run(tmp_path)
    assert main(["report", str(d), "--quiet"]) == 0
    text = (d / "report.html").read_text()
    first, rest = text.split("<nav class='toc'>", 1)
    # the first screen: the verdict table, the picture, a what-to-do line per method
    assert first.count("<table>") == 1 and "<th>verdict</th>" in first
    assert "<img src='data:image/png;base64," in first and "unit-map distance between" in first
    assert "What to do</h3>" in first
    assert "<strong>Simple-Grad</strong>: smooth with r = " in first
    assert "the maps agree more (unit-map distance from r = 0 to 0.15: -" in first
    assert "<details>" not in first.split("What to do")[0]  # the table is open
    # the contents: one entry per section, each to an anchor that exists
    toc = re.findall(r"<li><a href='#([^']+)'>", rest.split("</nav>")[0])
    ids = re.findall(r"<section id='([^']+)'>", rest)
    assert toc == ids and len(ids) >= 8 and len(set(ids)) == len(ids)
    table1 = "table-1-similarity-of-the-two-models-maps"
    assert {"recommended-noise-level", table1, "maps", "resolved-config"} <= set(ids)
    every = re.findall(r" id='([^']+)'", text)
    assert len(every) == len(set(every))  # every anchor on the page is unique
    # after the first screen every table and code block is collapsed behind a summary
    parsed = Page(rest)
    tables = [above for tag, _, above in parsed.elements if tag in ("table", "pre")]
    assert tables and all("details" in above for above in tables)
    summaries = re.findall(r"<summary>(.*?)</summary>", rest)
    assert len(summaries) >= len(tables) and all(s.strip() for s in summaries)
    assert "Simple-Grad: stability and fidelity errors per r (3 r)" in summaries
    # nothing literal: Markdown in the words is rendered
    assert literal_markdown("".join(Page(text).text)) == []
    assert "<code>smoothstab plan --pilot RUN_DIR --target-halfwidth X</code>" in text


def test_report_md_stays_a_plain_markdown_report(tmp_path):
    d = designed_run(tmp_path)
    assert main(["report", str(d), "--quiet"]) == 0
    md = (d / "report.md").read_text()
    assert "<details>" not in md and "<nav" not in md
    assert md.index("| method | n | r from 0 to |") < md.index("**Contents**")
    assert "- [Recommended noise level](#recommended-noise-level)" in md
    assert "## Recommended noise level" in md and "## Resolved config" in md
    assert "![Per method: the scale-free unit-map distance" in md  # the picture, linked
    assert "*Simple-Grad: stability and fidelity errors per r (3 r)*\n\n| r | sigma |" in md


def test_a_new_section_is_one_entry(tmp_path, monkeypatch):
    """A section appended to the list gets its contents entry, its anchor and its table
    collapsed behind its summary, after the ones before it."""
    d = designed_run(tmp_path)

    def chance(x):
        table = Table(["r", "floor"], [["0", "0.5"]], "Chance floors per r")
        return Section("What a similarity means", [Paragraph("**Floors** first."), table])

    monkeypatch.setattr(report, "SECTIONS", (*report.SECTIONS, chance))
    assert main(["report", str(d), "--quiet"]) == 0
    text = (d / "report.html").read_text()
    assert "<li><a href='#what-a-similarity-means'>What a similarity means</a></li>" in text
    section = text[text.index("<section id='what-a-similarity-means'>") :]
    assert "<p><strong>Floors</strong> first.</p>" in section
    assert "<details><summary>Chance floors per r</summary><table>" in section
    assert text.index("id='resolved-config'") < text.index("id='what-a-similarity-means'")


def test_sections_as_plain_blocks_are_split_at_their_headings(tmp_path, monkeypatch):
    """A section function may return blocks with level-2 headings, as pages written before
    sections do: each heading opens a section with its entry, anchor and collapsed tables."""
    d = designed_run(tmp_path)

    def older(x):
        return [Heading(2, "Chance floors"), Table(["r"], [["0"]], "Floors per r"),
                Heading(2, "Where models disagree"), Paragraph("maps")]  # fmt: skip

    monkeypatch.setattr(report, "SECTIONS", (*report.SECTIONS, older))
    assert main(["report", str(d), "--quiet"]) == 0
    text = (d / "report.html").read_text()
    for anchor in ("chance-floors", "where-models-disagree"):
        assert f"<li><a href='#{anchor}'>" in text and f"<section id='{anchor}'>" in text
    floors = text[text.index("<section id='chance-floors'>") :].split("</section>")[0]
    assert "<details><summary>Floors per r</summary><table>" in floors
    assert "## Chance floors" in (d / "report.md").read_text()


def test_inline_markdown_is_rendered_and_escaped():
    got = inline("**Every bound** is `a < b`, see [the page](docs/x.md); *so* r* and 2 * 3")
    assert got == (
        "<strong>Every bound</strong> is <code>a &lt; b</code>, see "
        "<a href='docs/x.md'>the page</a>; <em>so</em> r* and 2 * 3"
    )
    assert inline("<script>") == "&lt;script&gt;"
    assert inline("`**kept** [a](b)`") == "<code>**kept** [a](b)</code>"
    blocks = [Paragraph("x"), Details("more `b`", [Table(["a"], [["`b`"]])])]
    assert render_html(blocks, "t").count("<details>") == 1
    assert "<summary>more <code>b</code></summary>" in render_html(blocks, "t")
    blocks[1] = Details("more", blocks[1].blocks)
    assert "**more**\n\n| a |" in render_markdown(blocks)


def test_the_bounds_verdict_is_bold_not_asterisks():
    """The bounds page's first sentence carries Markdown bold: rendered, not printed."""
    text = "**Every bound on this page is vacuous**: each of the 3 bounds is above it."
    out = render_html([Section("Theory", [Paragraph(text)])], "t")
    assert "<strong>Every bound on this page is vacuous</strong>:" in out
    assert literal_markdown("".join(Page(out).text)) == []


# --- what to do, in words ----------------------------------------------------------------------


def sigma(r: float) -> float:
    return 3 * r


def advice_of(k: int, change: float, sizes=("",), **kw):
    rows = []
    for j, n in enumerate(sizes):
        c = change[j] if isinstance(change, tuple) else change
        steps = {0.0: 0.0, 0.2: c / 2, 0.4: c}
        rows += crossed_rows(k, 16, steps, n=n, seed=j, first=10 * j, **kw)
    summary = Summary.from_rows(rows)
    advice = advise(summary, ["grad"], debiased=False, budget=10.0, measure="unit_distance")
    return summary, advice


def test_what_to_do_when_the_maps_agree_more():
    summary, advice = advice_of(6, -0.2)
    (s,) = splits(summary, ["grad"], False)
    (line,) = page.todo_lines([s], advice, sigma)
    r = advice.of("grad").recommended_r
    assert line.startswith(f"**Simple-Grad**: smooth with r = {r:g} (sigma = {3 * r:.3g})")
    assert advice.of("grad").best_at_sweep_edge == ("may keep falling beyond the sweep" in line)
    assert "; the maps agree more (unit-map distance from r = 0 to 0.4: -" in line
    assert "cannot" not in line


def test_what_to_do_when_this_run_cannot_tell():
    """A change within the noise: no smoothing, 'cannot tell yet' with the interval and the
    models and images the plan says would decide it."""
    summary, advice = advice_of(6, 0.0, model_sd=0.2, noise=0.2)
    (s,) = splits(summary, ["grad"], False)
    a = advice.of("grad")
    assert s.sign == 0 and a.status == "no smoothing" and a.plans
    (line,) = page.todo_lines([s], advice, sigma)
    assert line.startswith("**Simple-Grad**: do not smooth (no r measurably more stable within ")
    assert f"cannot tell yet (unit-map distance from r = 0 to 0.4: {page.interval_text(s)})" in line
    p = a.plans[-1]
    need = "more than 40 models and 1024 test images" if p.k is None else (
        f"about {p.k} models and {p.m} test images"
    )  # fmt: skip
    what = "would decide it" if len(a.plans) > 1 else f"would tell a {100 * p.target:.1f}% change"
    assert f": {need} {what}" in line and line.endswith(".")
    assert "no more or less" not in page.verdict(s) and page.verdict(s).startswith("cannot tell")


def test_what_to_do_with_too_few_models():
    summary, advice = advice_of(3, -0.2)
    s = split(summary, "grad", None, debiased=False)
    (line,) = page.todo_lines([s], advice, sigma)
    assert line == "**Simple-Grad**: cannot tell: 3 models, advice needs 4 or more."


@pytest.mark.parametrize("same", [True, False])
def test_one_sentence_when_the_recommended_r_depends_on_the_size(same):
    changes = (-0.3, -0.3) if same else (-0.3, 0.0)
    _, advice = advice_of(6, changes, sizes=(100, 200))
    recs = [
        f"r = {a.recommended_r:g}" if a.status == "smooth" else a.status for a in advice.methods
    ]
    sentence = page.sizes_sentence(advice)
    if len(set(recs)) == 1:
        assert sentence == ""
    else:
        assert sentence.startswith("The recommended r depends on the training-set size (")
        assert f"Simple-Grad: {recs[0]} at n = 100, {recs[1]} at n = 200)" in sentence
        assert "the lines above are for the largest, n = 200" in sentence
    assert same == (len(set(recs)) == 1)
