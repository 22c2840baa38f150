"""The documentation site: it builds with warnings as errors, its pages load in headless Chromium
without a console error, a failed request, a broken image, a raw Sphinx role, literal Markdown or
a code line cut at its box's edge, every Python example on the getting-started and how-to pages
runs as written, and the gallery's scripts and the notebook run.

The browser is driven over the DevTools protocol (``--remote-debugging-pipe``): one Chromium
visits every page, served over HTTP as a web server would, and reports uncaught exceptions,
``console.error`` calls, log entries at error level (a failed resource load is one), failed
requests and HTTP errors, whatever the page's own scripts do.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers import BROWSER, NO_BROWSER, ROOT

DOCS = ROOT / "docs"
GALLERY_SCRIPTS = sorted((DOCS / "gallery").glob("*.py"))
OPTIONAL = {"timm", "quantus", "captum", "transformers"}  # extras: a block needing one skips


def nav_pages(*sections: str) -> list[str]:
    """The pages of mkdocs.yml's nav under the top-level entries named ``sections`` (none: all)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(value) -> list[str]:  # a page, {title: page} or {title: [entries]}
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [p for v in value.values() for p in pages(v)]
        return [p for v in value for p in pages(v)]

    found = []
    for entry in nav:
        ((title, value),) = entry.items()
        if title in sections or not sections:
            found += pages(value)
    return found


def doc_files() -> list[str]:
    """Every page source under docs/: the Markdown files and the notebook."""
    files = [*DOCS.rglob("*.md"), *DOCS.glob("*.ipynb")]
    return sorted(p.relative_to(DOCS).as_posix() for p in files)


def resolve_snippets(text: str) -> str:
    """``--8<-- "FILE:SECTION"`` lines replaced by that section of FILE, as the site's snippets
    extension includes it."""

    def section(m: re.Match) -> str:
        path, _, name = m[1].partition(":")
        source = (ROOT / path).read_text()
        start, end = f"--8<-- [start:{name}]", f"--8<-- [end:{name}]"
        inner = source.split(start, 1)[1].split(end, 1)[0]
        return inner.split("\n", 1)[1].rsplit("\n", 1)[0]  # without the marker lines

    return re.sub(r'(?m)^--8<-- "([^"]+)"$', section, text)


def python_blocks() -> list:
    pages = nav_pages("Getting started", "How-to")
    assert "index.md" in pages and "choose_sigma.md" in pages, pages
    params = []
    for page in pages:
        text = resolve_snippets((DOCS / page).read_text())
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            params.append(pytest.param(page, code, id=f"{page}:{i}"))
    return params


@pytest.mark.parametrize(("page", "code"), python_blocks())
def test_python_examples_run(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may save a figure
    try:
        exec(compile(code, f"docs/{page}", "exec"), {"__name__": "__docs__"})
    except ModuleNotFoundError as e:
        if e.name not in OPTIONAL:
            raise
        pytest.skip(f"needs the optional package {e.name}")


def test_every_doc_file_is_in_the_nav():
    assert sorted(nav_pages()) == doc_files()


def build_site(out: Path, tree: Path = ROOT) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` into ``out``. Not ``-q``: mkdocs then drops the warnings before
    ``--strict`` counts them, and a broken link passes."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["NO_MKDOCS_2_WARNING"] = "1"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_site_builds_strictly_with_every_page_and_key(served_site):
    """The build (in the fixture) passed --strict; the generated page lists every config key,
    the README's sections are included where the pages pull them in, the API page is filled."""
    _, site = served_site
    from smoothstab.experiments.config.keys import config_keys

    config = (site / "config" / "index.html").read_text()
    for key in config_keys():
        assert f"<code>{key.name.rpartition('.')[2]}</code>" in config, key.name
    assert "<!-- config keys -->" not in config
    index = (site / "index.html").read_text()
    assert "debiased_distance" in index and "runs the quickstart into runs/quickstart/" in index
    assert "SmoothStats" in (site / "api" / "index.html").read_text()


RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):(?:<code>|`)")


@pytest.mark.slow
def test_the_api_page_has_links_not_roles(served_site):
    """The docstrings' Sphinx roles are links on the API page (or plain code where the site does
    not render the object), never raw; every public name a docstring refers to is rendered (so
    its reference is a link); grouped parameters are one row each with their defaults."""
    import griffe

    import smoothstab

    _, site = served_site
    html = (site / "api" / "index.html").read_text()
    assert RAW_ROLE.findall(html) == []
    links = re.findall(r'<a class="autorefs autorefs-internal"[^>]*href="#([^"]+)"', html)
    assert len(links) >= 150, len(links)
    assert all(f'id="{anchor}"' in html for anchor in links)
    plain = set(re.findall(r'<span title="(smoothstab[\w.]*)"><code>', html))
    package = griffe.load("smoothstab", search_paths=[str(ROOT)])
    public = set()
    for name in [*smoothstab.__all__, *smoothstab.LAZY]:
        try:
            public.add(
                package[name].final_target.path if package[name].is_alias else package[name].path
            )
        except (KeyError, griffe.AliasResolutionError):
            public.add(f"{smoothstab.LAZY[name][0]}.{smoothstab.LAZY[name][1] or name}")
    assert plain & public == set(), "public names the API page does not render"
    for cell in ("steps, rule", "a, b", "mode, layers, init_seed"):
        assert f"<code>{cell}</code>" not in html, cell
    ig = html[html.index('id="smoothstab.methods.integrated_gradients"') :]
    defaults = {}
    for row in ig.split('<tr class="doc-section-item">')[1:7]:  # its first six parameters
        cells = [re.sub(r"<[^>]+>|\s+", "", c) for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        defaults[cells[0]] = cells[-1]
    assert defaults.get("steps") == "20" and defaults.get("rule") == "&#39;paper&#39;", defaults


@pytest.mark.slow
def test_a_broken_link_fails_the_build(tmp_path):
    """--strict is what keeps the site honest: a link to a missing page is an error."""
    import shutil

    copy = tmp_path / "tree"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copy(ROOT / "README.md", copy)
    (copy / "docs" / "status.md").write_text("# Status\n\n[gone](no_such_page.md)\n")
    done = build_site(tmp_path / "site", copy)
    assert done.returncode != 0 and "no_such_page.md" in done.stderr, done.stderr[-2000:]


# --- the built pages in a real browser ---------------------------------------------------------


# Runs the browser with the two pipe ends (above fd 10, so no clash) moved to fds 3 and 4.
TO_3_AND_4 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " + (
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class DevTools:
    """Headless Chromium driven over ``--remote-debugging-pipe``: JSON messages, each ended by a
    NUL byte, commands on fd 3 and replies and events on fd 4."""

    def __init__(self, profile: Path):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
        for fd in (to_browser, from_browser):
            os.close(fd)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TO_3_AND_4, *map(str, ends), BROWSER, *flags]
            + [f"--user-data-dir={profile}", "about:blank"],
            pass_fds=ends,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in ends:
            os.close(fd)
        self._buffer, self._id, self.events = b"", 0, []
        (page,) = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._next(deadline - time.monotonic()))

    def settle(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds`` (late errors of a loaded page)."""
        deadline = time.monotonic() + seconds
        while select.select([self._read], [], [], max(deadline - time.monotonic(), 0))[0]:
            self.events.append(self._next(1))
            if time.monotonic() > deadline:
                break

    def _next(self, timeout: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], max(timeout, 0))
            assert ready, "Chromium did not answer in time"
            chunk = os.read(self._read, 1 << 16)
            assert chunk, "Chromium closed the pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        os.close(self._write)
        os.close(self._read)
        self.proc.kill()
        self.proc.wait(timeout=30)


IMAGES = "JSON.stringify([...document.images].map(i => [i.src, i.complete && i.naturalWidth > 0]))"

# What a reader would see wrong on a rendered page, outside code: a Sphinx role left raw (the
# role's text before a code element, or with its backticks), literal Markdown (``**``, a
# backtick, ``[text](link)``); and a page that scrolls sideways, or a code box whose longest line
# runs past its edge (cut until scrolled).
PAGE_CHECK = r"""(() => {
  const found = [];
  const root = document.querySelector('.md-content') || document.body;
  const inCode = el => el.closest('code, pre, script, style, kbd, samp, svg, math');
  const role = /:(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):(`|$)/;
  const markdown = [/\*\*\S/, /`/, /\[[^\]\n]+\]\([^)\s]+\)/];
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (!n.parentElement || inCode(n.parentElement)) continue;
    const text = n.nodeValue, m = text.match(role);
    const next = n.nextSibling && n.nextSibling.nodeName;
    if (m && (m[1] === '`' || next === 'CODE')) found.push('raw role: ' + text.trim().slice(-60));
    if (markdown.some(p => p.test(text))) {
      found.push('literal Markdown: ' + text.trim().slice(0, 80));
    }
  }
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth) {
    found.push(`the page scrolls sideways: ${page.scrollWidth} > ${page.clientWidth} px`);
  }
  for (const box of document.querySelectorAll('pre')) {
    if (box.scrollWidth > box.clientWidth + 1) {
      const lines = box.textContent.split('\n').sort((a, b) => b.length - a.length);
      found.push('a code line runs past its box: ' + lines[0].slice(0, 60));
    }
  }
  return JSON.stringify(found);
})()"""
VIEWPORT = dict(width=1400, height=900, deviceScaleFactor=1, mobile=False)


def check_page(browser: DevTools, url: str) -> list[str]:
    """Opens ``url`` at 1400x900 and returns its problems: console errors, failed requests,
    broken images and what ``PAGE_CHECK`` finds."""
    browser.events.clear()
    browser.call("Page.navigate", session=True, url=url)
    browser.wait_for("Page.loadEventFired")
    shown = browser.call("Runtime.evaluate", session=True, expression=IMAGES)
    images = json.loads(shown["result"]["value"])
    seen = browser.call("Runtime.evaluate", session=True, expression=PAGE_CHECK)
    browser.settle(0.3)
    broken = [f"broken image: {src}" for src, ok in images if not ok]
    return problems(browser.events) + broken + json.loads(seen["result"]["value"])


def problems(events: list[dict]) -> list[str]:
    """The console errors, exceptions, failed requests and HTTP errors among DevTools events."""
    found = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            found.append("uncaught: " + p["exceptionDetails"].get("text", ""))
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            found.append("console.error: " + " ".join(str(a.get("value")) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            found.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            found.append(f"request failed: {p['errorText']}")
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            found.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
    return found


@contextlib.contextmanager
def serving(folder: Path):
    """``folder`` served over HTTP on a local port, as a web server would: its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    """The site built into a temporary folder and served on a local port: its base URL."""
    out = tmp_path_factory.mktemp("docs") / "site"
    done = build_site(out)
    assert done.returncode == 0, done.stderr[-3000:]
    with serving(out) as base:
        yield base, out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


PICTURED = [".", "smooth_any_model", "gallery", *(f"gallery/{p.stem}" for p in GALLERY_SCRIPTS)]
PICTURED += ["notebook"]


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_pages_load_in_headless_chromium_without_errors(served_site, tmp_path):
    """Every page at 1400x900: no console error, failed request or broken image, no raw role or
    literal Markdown in its text, no sideways scrolling and no code line cut at its box."""
    base, out = served_site
    pages = sorted(p.relative_to(out).parent.as_posix() for p in out.rglob("index.html"))
    assert len(pages) == len(doc_files())
    browser = DevTools(tmp_path / "profile")
    browser.call("Emulation.setDeviceMetricsOverride", session=True, **VIEWPORT)
    try:
        report, images = {}, {}
        for page in pages:
            url = f"{base}/{'' if page == '.' else page + '/'}"
            report[page] = check_page(browser, url)
            title = browser.call("Runtime.evaluate", session=True, expression="document.title")
            assert "smoothstab" in title["result"]["value"], (page, title)
            count = "document.querySelectorAll('.md-content img').length"
            images[page] = browser.call("Runtime.evaluate", session=True, expression=count)
    finally:
        browser.close()
    assert {p: r for p, r in report.items() if r} == {}
    # the pages that talk about pictures show them (at least one image each)
    shown = {p: images[p]["result"]["value"] for p in PICTURED}
    assert all(shown.values()), shown


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_the_browser_check_sees_errors(served_site, tmp_path):
    """The check above can fail: a page with a script error, a console.error, a missing image,
    a missing stylesheet, a raw role, literal Markdown, a cut code line and a too-wide block
    gives one problem each; the same text inside code gives none."""
    base, out = served_site
    long = "x = 1  # " + "a long comment " * 20
    (out / "broken.html").write_text(
        '<html><head><link rel="stylesheet" href="missing.css"></head><body>'
        '<img src="missing.png"><script>console.error("boom"); undefined_name();</script>'
        "<p>see :func:<code>smooth</code> and :class:`Smoothed`</p><p>a **bold** claim</p>"
        "<p>a [link](page.md) and a `tick</p><p><code>**fine** [a](b) :func:`x`</code></p>"
        f'<pre style="width: 300px; overflow: auto"><code>{long}</code></pre>'
        '<div style="width: 3000px">wide</div></body></html>'
    )
    browser = DevTools(tmp_path / "profile")
    browser.call("Emulation.setDeviceMetricsOverride", session=True, **VIEWPORT)
    try:
        found = check_page(browser, f"{base}/broken.html")
    finally:
        browser.close()
    text = "\n".join(found)
    assert "uncaught" in text and "console.error: boom" in text, text
    assert "HTTP 404" in text and "missing.css" in text and "broken image" in text, text
    assert [f for f in found if f.startswith("raw role")] == [
        "raw role: see :func:",
        "raw role: and :class:`Smoothed`",
    ], found
    markdown = [f for f in found if f.startswith("literal Markdown")]
    assert len(markdown) == 3 and "fine" not in "".join(markdown), found
    assert "a code line runs past its box: x = 1  # a long comment" in text, text
    assert "the page scrolls sideways" in text, text


# --- the report of a run in the browser ---------------------------------------------------------

# The report's first screen (the window's height) holds the verdict table whole and a picture
# whole, shown at (nearly) its own size; the contents link existing anchors; after the first
# screen every table is collapsed.
FIRST_SCREEN = r"""(() => {
  const found = [], h = window.innerHeight;
  const table = document.querySelector('table');
  if (!table || !/verdict/.test(table.rows[0].textContent)) {
    found.push('no verdict table');
  } else {
    const b = table.getBoundingClientRect();
    if (b.top < 0 || b.bottom > h) {
      found.push(`the verdict table is not on the first screen: ${b.top}-${b.bottom} px`);
    }
  }
  const shown = [...document.images].filter(i => {
    const b = i.getBoundingClientRect();
    return i.naturalWidth > 0 && b.top >= 0 && b.bottom <= h && b.height >= 100;
  });
  if (!shown.length) found.push('no picture on the first screen');
  for (const i of shown) {
    if (i.width < 0.9 * i.naturalWidth) {
      found.push(`the first picture is shrunk to ${i.width} of its ${i.naturalWidth} px`);
    }
  }
  const links = [...document.querySelectorAll('nav.toc a')];
  if (!links.length) found.push('no table of contents');
  for (const a of links) {
    if (!document.getElementById(a.hash.slice(1))) found.push('no anchor for ' + a.hash);
  }
  for (const t of [...document.querySelectorAll('table')].slice(1)) {
    if (!t.closest('details')) found.push('a table not collapsed: ' + t.rows[0].textContent);
  }
  return JSON.stringify(found);
})()"""


def report_problems(browser: DevTools, url: str) -> list[str]:
    """``check_page``'s problems and the first screen's."""
    found = check_page(browser, url)
    seen = browser.call("Runtime.evaluate", session=True, expression=FIRST_SCREEN)
    return found + json.loads(seen["result"]["value"])


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)
def test_the_report_reads_in_headless_chromium(tiny_run, tmp_path):
    """The tiny run's report.html at 1400x900: its first screen holds the verdict table and a
    picture at its own size; no console error, broken image or literal Markdown, no sideways
    scrolling, every contents link to an anchor, every later table collapsed. The same report
    with its first screen pushed down, a picture broken, a table left open, literal Markdown
    and a block wider than the window fails on each."""
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(tiny_run / "report.html", folder / "report.html")
    text = (tiny_run / "report.html").read_text()
    spoilt = text.replace("<body>", "<body><div style='height:1000px'></div>", 1)
    spoilt = spoilt.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    spoilt = spoilt.replace(
        "</body>",
        "<table><tr><td>open</td></tr></table>**bold**<div style='width:3000px'>wide</div></body>",
    )
    (folder / "spoilt.html").write_text(spoilt)
    browser = DevTools(tmp_path / "profile")
    browser.call("Emulation.setDeviceMetricsOverride", session=True, **VIEWPORT)
    try:
        with serving(folder) as base:
            good = report_problems(browser, f"{base}/report.html")
            bad = report_problems(browser, f"{base}/spoilt.html")
    finally:
        browser.close()
    assert good == [], good
    bad_text = "\n".join(bad)
    for problem in (
        "the verdict table is not on the first screen",
        "no picture on the first screen",
        "broken image",
        "a table not collapsed: open",
        "literal Markdown: **bold**",
        "the page scrolls sideways",
    ):
        assert problem in bad_text, bad
