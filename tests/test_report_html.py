"""The HTML report and compare's page: what they hold (plain functions over hand-built rows),
and how they render in a real headless Chromium at 1400 and 800 px: the verdict banner, no
element wider than the window, no text overflowing its box, collapsing, sorting, panels.

The browser tests share one browser and three real sessions (tests/report_pages.py). With
VACCBENCH_SCREENSHOTS=DIR they also write the screenshots docs/reports.md shows:
    VACCBENCH_SCREENSHOTS=docs pytest tests/test_report_html.py -k screenshots
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from pytest_vaccbench import report_html
from pytest_vaccbench.history import Point, series_key
from pytest_vaccbench.report import STRICT, Row
from pytest_vaccbench.compare import compare_html
from pytest_vaccbench.report_html import html_report
from pytest_vaccbench.run import Result

EXPECTED = {"top1": 70.0, "top5": 90.0, "tol1": 0.5, "tol5": 0.5, "origin": "fam.yaml: m"}


def _result(model: str, precision: str = "fp32", correct1: int = 350, n: int = 500,
            predictions: str = "/nonexistent.npz") -> Result:
    return Result("fam", model, "onnxruntime", precision, "imagenet-val", "abc", n, correct1,
                  450, 1.0, predictions, "/b.yaml")


def _gated_rows() -> list[Row]:
    """Rows gated by the real gate on 500 of 50,000 images against a whole-set baseline of
    70.0: 68.0 passes only on the sampling allowance, 60.0 fails beyond it."""
    from pytest_vaccbench.baselines import Tolerance
    from pytest_vaccbench.gate import Expectation, Images, judge
    from pytest_vaccbench.metrics import Accuracy

    expected = Expectation(70.0, 90.0, Tolerance(0.5, 0.5), "test", n=50000)
    rows = []
    for name, correct1 in (("rescued", 340), ("regressed", 300)):
        verdict = judge(Accuracy(500, correct1, 450), expected,
                        Images("imagenet-val", 500, 50000, "abc"), "pytest --update-baselines")
        rows.append(Row(f"s.yaml::fam/{name}[onnxruntime-fp32]", "passed" if verdict.passed else "failed",
                        _result(name, correct1=correct1), dict(EXPECTED),
                        reason="" if verdict.passed else verdict.message,
                        gate={**verdict.details, "message": verdict.message}))
    # a pass on 500 of 50,000 images cannot see a drop of twice the tolerance: weak
    assert [r.status for r in rows] == ["weak", "FAILED"]
    assert 0.5 < abs(rows[0].delta("top1")) < rows[0].allowed("top1")  # the sampling allowance's case
    return rows


def _strict(n: int) -> list[Row]:
    reason = (f"{STRICT} (--vaccbench-strict): vamp binary not found: 'vamp' is not an executable "
              "on PATH; run on a machine with a VastAI accelerator and its SDK, or pass --vamp-bin")
    return [Row(f"s.yaml::fam/model-{i}[vamp-fp16]", "failed", reason=reason) for i in range(n)]


# -- what the page holds ------------------------------------------------------------------

def test_page_is_self_contained():
    page = html_report([*_gated_rows(), *_strict(2)], {"exitstatus": 1, "command": "pytest x"})
    for outside in ("http:", "https:", "<link", "@import", "url(", "<script src", "<iframe"):
        assert outside not in page
    assert re.findall(r'\bsrc="(?!data:image/jpeg;base64,)', page) == []
    assert page.count("<script>") == 1


@pytest.mark.parametrize(("rows", "session", "light", "exit_line"), [
    (lambda: _gated_rows()[:1], {"exitstatus": 0}, "GREEN",
     "exit 0: every accuracy test that was measured is within tolerance"),
    (lambda: _gated_rows(), {"exitstatus": 1}, "RED", "exit 1: a gate failed"),
    (lambda: _strict(43), {}, "RED", "exit 1: a gate failed"),  # no exit code: the rows say it
    (lambda: [Row("s.yaml::fam/m[vamp-fp16]", "skipped", reason="vamp binary not found")], {}, "RED",
     "exit 5: accuracy tests were selected and none was measured"),
])
def test_verdict_banner_says_green_or_red_the_exit_code_and_the_counts(rows, session, light, exit_line):
    page = html_report(rows(), session)
    banner = page[page.index('<section id="verdict"'):page.index("</section>")]
    assert f'<span class="badge">{light}</span>{exit_line}' in banner
    assert f'class="verdict {light.lower()}"' in banner
    assert f"{len(rows())} selected accuracy tests:" in banner


def test_failures_are_grouped_by_reason_one_row_each_with_their_tests():
    rows = [*_strict(43), *_gated_rows(),
            Row("s.yaml::fam/x[onnxruntime-fp32]", "failed",
                reason="def test():\n>   raise RuntimeError\nE   RuntimeError: no device\n"),
            Row("s.yaml::fam/y[reference-fp32]", "skipped", reason="weights not found for fam/y: looked"),
            Row("s.yaml::fam/z[reference-fp32]", "skipped", reason="weights not found for fam/z: looked")]
    page = html_report(rows, {"exitstatus": 1})
    banner = page[page.index('<section id="verdict"'):page.index("</section>")]
    lines = re.findall(r'<li(?: class="grey")?><a href="#([gs]\d)">([^<]+)</a>: ([^<]+)</li>', banner)
    assert [(anchor, count) for anchor, count, _ in lines] == [
        ("g0", "43 FAILED"), ("g1", "1 FAILED"), ("g2", "1 error"), ("s0", "2 skipped")]
    assert lines[0][2].startswith("strict mode (--vaccbench-strict): vamp binary not found")
    assert lines[1][2].startswith("regression: outside the allowed difference")
    assert lines[2][2] == "RuntimeError: no device"
    assert lines[3][2] == "weights not found for &lt;model&gt;: looked"  # said of no test in particular
    groups = re.findall(r'<tr id="([gs]\d)" class="(\w+)"><td class="num">(\d+)</td>', page)
    assert groups == [("g0", "bad", "43"), ("g1", "bad", "1"), ("g2", "bad", "1"), ("s0", "grey", "2")]
    group = page[page.index('<tr id="g0"'):page.index('<tr id="g1"')]
    assert group.count('<li><a href="#t') == 43  # its tests, expandable (<details>)
    assert "<details><summary>" in group
    regression = page[page.index('<tr id="g1"'):page.index('<tr id="g2"')]
    assert "top1 is 10.000 points below the baseline" in regression  # each test's own headline


def test_skips_are_grey_failures_red_passes_green():
    rows = [*_gated_rows(), Row("s.yaml::fam/s[reference-fp32]", "skipped", reason="no weights")]
    page = html_report(rows, {})
    classes = re.findall(r'<tr class="test ([\w-]+) (\w+)"', page)
    # the pass on the sampling allowance is a weak gate's: amber, and named in the verdict
    assert classes == [("weak", "neutral"), ("FAILED", "bad"), ("skipped", "grey")]
    assert '<li class="neutral">1 weak: cannot see a top-1 drop under' in page
    assert re.search(r"tr\.grey td,tr\.grey td\.status\{color:#888", page)


def test_band_is_the_allowance_the_gate_used():
    rows = _gated_rows()
    page = html_report(rows, {})

    def rects(kind: str) -> list[tuple[float, float]]:
        found = re.findall(rf'class="{kind}" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', page)
        return [(float(x), float(w)) for x, w in found]

    table = page[page.index('<table id="results">'):page.index('<tr class="detail"')]
    bands = rects("band")[:1] + rects("band")[2:3]  # the table's, not the detail panels'
    tols = rects("tolerance")[:1] + rects("tolerance")[2:3]
    dots = [float(cx) for cx in re.findall(r'<circle class="delta \w+" cx="([\d.]+)"', page)][::2]
    assert table.count('class="band"') == 1 and len(bands) == len(tols) == len(dots) == 2
    for (bx, bw), (tx, tw), cx, row in zip(bands, tols, dots, rows):
        assert bw / tw == pytest.approx(row.allowed("top1") / 0.5, rel=0.01)
        assert (bx <= cx <= bx + bw) == (row.status != "FAILED")
        assert not tx <= cx <= tx + tw  # outside the tolerance alone, in both rows
    assert f"allowed ±{rows[0].allowed('top1'):.3f}" in page


def test_sparkline_draws_the_history_and_marks_the_baseline():
    row = _gated_rows()[0]
    points = [Point(f"2026-11-0{i}T02:00:00", top1, 90.0, "passed") for i, top1 in
              enumerate((70.2, 69.9, 68.0), 1)]
    page = html_report([row], {}, {series_key(row.result): points})
    cell = re.search(r'<svg class="trend" width="110" height="24".*?</svg>', page).group(0)
    ys = [float(y) for y in re.findall(r"[\d.]+,([\d.]+)", re.search(r'points="([^"]+)"', cell).group(1))]
    baseline = float(re.search(r'class="baseline" x1="2" x2="108" y1="([\d.]+)"', cell).group(1))
    assert len(ys) == 3 and ys[0] < baseline < ys[1] < ys[2]  # 70.2 above the baseline 70.0, then below
    assert "baseline 70.000" in cell and "2026-11-03 02:00:00 68.000" in cell
    assert "top1 over time (dashed: baseline)" in page
    assert '<svg class="trend"' not in html_report([row], {})  # no history, no column


def _payload_rows(tmp_path: Path) -> list[Row]:
    """fp32 and int8 of one model on six photos written here: int8 loses two and gains one."""
    from PIL import Image

    labels = np.array([0, 0, 1, 1, 2, 2], dtype=np.int16)
    files = [f"{i}.png" for i in range(6)]
    for i, name in enumerate(files):
        Image.new("RGB", (300, 200), (40 * i, 100, 200)).save(tmp_path / name)
    rows = []
    for precision, top1 in (("fp32", [0, 0, 1, 1, 2, 5]), ("int8-max", [0, 7, 9, 1, 2, 2])):
        npz = tmp_path / f"{precision}.npz"
        top5 = np.array([[t, 10, 11, 12, 13] for t in top1], dtype=np.int16)
        np.savez(npz, top5=top5, labels=labels, files=np.array(files))
        correct = int((top5[:, 0] == labels).sum())
        rows.append(Row(f"s.yaml::fam/m[onnxruntime-{precision}]", "passed",
                        _result("m", precision, correct, 6, str(npz)), dict(EXPECTED),
                        command=f"pytest 's.yaml::fam/m[onnxruntime-{precision}]' --update-baselines"))
    return rows


def test_detail_panel_holds_every_section_the_payload_has(tmp_path):
    rows = _payload_rows(tmp_path)
    gate = _gated_rows()[1].gate
    rows[1].gate = {**gate, "paired": {"reference": "onnxruntime/fp32", "predictions": "p.npz", "n": 6,
                                       "agree": 3, "agreement": 50.0, "agreement_interval": [20.0, 80.0],
                                       "reference_only_correct": 2, "run_only_correct": 1,
                                       "mcnemar_p": 1.0, "min_agreement": None}}
    rows[1].outcome, rows[1].reason = "failed", gate["message"] + "\nlayer triage (6 images): conv 3"
    images = {p.name: p for p in tmp_path.glob("*.png")}
    page = html_report(rows, {}, images=images)
    panel = page[page.index('<tr class="detail" id="d1">'):]
    sections = re.findall(r'<section class="s-(\w+)"><h3>', panel)
    assert sections == ["message", "allowance", "paired", "flips", "classes", "more", "record", "run"]
    assert "top1 is 10.000 points below the baseline" in panel
    assert "allowed ±" in panel and "tolerance 0.500 + sampling" in panel
    assert "top-1 agreement 50.000% (3/6, interval 20.000 to 80.000)" in panel
    assert "3 images flipped against onnxruntime/fp32 (A)" in panel  # lost 1 and 2, gained 5
    assert panel.count('<img src="data:image/jpeg;base64,') == 3
    assert "<pre>layer triage (6 images): conv 3</pre>" in panel
    assert "pytest &#x27;s.yaml::fam/m[onnxruntime-int8-max]&#x27; --update-baselines" in panel
    losers = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d)</td><td class=\"num\">(\d)</td>"
                        r"<td class=\"num\">(\d)</td>", panel)
    assert losers == [("tench", "2", "2", "1"), ("goldfish", "2", "2", "1")]  # class 2 gained


def test_thumbnails_are_small_and_capped(tmp_path, monkeypatch):
    from PIL import Image

    from pytest_vaccbench import thumbnails

    rows = _payload_rows(tmp_path)
    (tmp_path / "2.png").write_bytes(b"not an image")  # left out, not an error
    monkeypatch.setattr(thumbnails, "PAGE_LIMIT", 2)
    page = html_report(rows, {}, images={p.name: p for p in tmp_path.glob("*.png")})
    found = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" width="(\d+)" height="(\d+)"', page)
    assert len(found) == 1  # two tried (one unreadable), then the page's limit
    data, width, height = found[0]
    import base64

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.size == (int(width), int(height)) == (96, 64) and len(data) < 6000


def test_a_section_added_to_the_registry_shows_in_the_panel(monkeypatch):
    """How a later payload key (a loss ladder, say) gets its place."""
    rows = _gated_rows()
    rows[0].gate["ladder"] = {"steps": 3}
    section = ("ladder", "loss ladder",
               lambda row, context: f"<p>{row.gate['ladder']['steps']} steps</p>"
               if "ladder" in (row.gate or {}) else "")
    monkeypatch.setattr(report_html, "SECTIONS", [*report_html.SECTIONS, section])
    page = html_report(rows, {})
    assert page.count('<section class="s-ladder"><h3>loss ladder</h3><p>3 steps</p>') == 1


def _sequential_row(folder: Path, key: str = "seq") -> Row:
    """A sequential run that stopped early on 2000 of 50,000 images, paired with the stored
    run: one class (goldfish) changed significantly, two of its flipped photos in `folder`."""
    from PIL import Image

    from pytest_vaccbench.sequential import Decision
    from pytest_vaccbench.significance import ClassChange

    for name in ("lost.png", "gained.png"):
        Image.new("RGB", (300, 200), (30, 100, 200)).save(folder / name)
    decision = Decision("passed", 2000, 50000, 20, 50, confidence=0.95,
                        bounds={"top1": [-0.21, 0.3], "top5": [-0.1, 0.12]},
                        estimate={"top1": 70.1, "top5": 90.0}, allowed={"top1": 0.5, "top5": 0.5})
    goldfish = {**ClassChange(1, 50, 45, 30, 15, 0, 6e-5, 0.03).to_json(),
                "flipped": [{"file": "lost.png", "lost": True}, {"file": "gained.png", "lost": False}]}
    stored = {"predictions": "ab" * 16, "store": "store/ab/" + "ab" * 16, "n": 2000, "agree": 1985,
              "agreement": 99.25, "lost": 9, "gained": 6, "mcnemar_p": 0.61, "fdr": 0.05,
              "classes_tested": 1000, "classes": [goldfish]}
    return Row(f"s.yaml::fam/{key}[onnxruntime-fp32]", "passed", _result(key, correct1=1402, n=2000),
               dict(EXPECTED), gate={"verdict": "passed", "message": "within", "sequential": decision.to_json(),
                                     "stored": stored})


def test_a_sequential_run_shows_where_it_stopped_and_the_classes_it_changed(tmp_path):
    row = _sequential_row(tmp_path)
    page = html_report([*_gated_rows(), row], {}, images={p.name: p for p in tmp_path.glob("*.png")})
    overview = page[page.index('<section id="sequential">'):page.index('<section id="tests">')]
    assert "1 test used 2000 of 50000 images (4.0%): 1 stopped early, 0 ran every image." in overview
    assert '<a href="#t2">fam/<wbr>seq' in overview and "every bound lies within the tolerance" in overview
    panel = page[page.index('<tr class="detail" id="d2">'):]
    assert re.findall(r'<section class="s-(\w+)"><h3>', panel)[:3] == ["message", "allowance", "sequential"]
    assert "stopped after 2000 of 50000 images (4.0%, round 20 of 50): passed" in panel
    assert '<td class="num">70.100</td><td class="num">[-0.210, +0.300]</td>' in panel
    stored = panel[panel.index('<section class="s-stored">'):]
    assert "top-1 agreement 99.250%, lost 9, gained 6" in stored and "<td>goldfish</td>" in stored
    assert '<figure class="lost"><img src="data:image/jpeg;base64,' in stored
    assert '<figure class="gained"><img src="data:image/jpeg;base64,' in stored
    table = page[page.index('<tr class="test'):]
    assert '<td class="num " data-v="70.1">70.100</td>' in table.split('id="t2"')[1]  # the estimate
    assert 'id="sequential"' not in html_report(_gated_rows(), {})


def test_a_missing_store_entry_is_said_in_the_panel():
    row = _gated_rows()[0]
    row.gate["stored"] = {"missing": "no store entry ab12 (recorded with another --vaccbench-store)"}
    page = html_report([row], {})
    assert "<p>not paired with the stored run: no store entry ab12" in page


def test_an_odd_payload_loses_its_section_not_the_report():
    row = _gated_rows()[0]
    row.gate["paired"] = {"reference": "x", "agreement": "not a number", "n": 1}
    page = html_report([row], {})
    assert "cannot be shown: " in page and '<section id="verdict"' in page


# -- in a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTHS = (1400, 800)

# Per element: wider than the window, or its text wider than its box (scrollWidth beyond
# clientWidth); the page: sideways scroll.
MEASURE = """
const vw = window.innerWidth, out = {width: vw, scroll: document.documentElement.scrollWidth,
  wide: [], overflowing: []};
const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (typeof el.className === 'string' && el.className ? '.' + el.className.trim().replace(/ +/g, '.') : '');
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if (r.right > vw + 0.5 || r.left < -0.5) out.wide.push(name(el) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  if (el instanceof HTMLElement && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
    out.overflowing.push(name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth + ': ' + el.textContent.slice(0, 80));
}
return out;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for every browser test of this module."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium or chromedriver is not installed (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium drives the browser "
                                    "(pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three sessions' HTML reports, and compare's page of the green one (fp32 vs int8)."""
    pytest.importorskip("skimage", reason="the built-in skimage-photos dataset needs scikit-image")
    from report_pages import SESSIONS

    from pytest_vaccbench.cli import main

    found = {}
    for name, session in SESSIONS.items():
        project = session(tmp_path_factory.mktemp(name))
        found[name] = project.path / "out" / "report.html"
    out = found["green"].parent
    assert main(["compare", str(out / "report.json"), "--a", "fp32", "--b", "int8-max",
                 "--html", str(out / "compare.html")]) == 0
    found["compare"] = out / "compare.html"
    stress = tmp_path_factory.mktemp("stress")
    found["stress"] = stress / "report.html"
    found["stress"].write_text(html_report(_stress_rows(stress), {"exitstatus": 1, "command": "pytest " + "x" * 300}))
    found["compare-long"] = stress / "compare.html"
    found["compare-long"].write_text(compare_html(_long_pairs(), "A: " + "a/" * 100))
    return found


LONG_KEY = "torchvision-mobilenet_v2_quantized_with_a_very_long_suffix_from_some_zoo_export"


def _stress_rows(folder: Path) -> list[Row]:
    """The widest things a report holds: long keys and runs, a reason that is one long path,
    a traceback, many tests failing for one reason, panels with thumbnails."""
    rows = [*_strict(43), *_gated_rows(), *_payload_rows(folder), _sequential_row(folder, LONG_KEY)]
    for row in rows[:43]:
        row.nodeid = row.nodeid.replace("model-", LONG_KEY + "-").replace("[vamp-fp16]", "[onnxruntime-int8-kl_divergence]")
    rows.append(Row("s.yaml::fam/far[reference-fp32]", "skipped",
                    reason="weights not found: looked for /" + "very_long_folder_name" * 20 + "/w.pth"))
    rows.append(Row("s.yaml::fam/err[reference-fp32]", "error", reason="".join(
        f"  File \"/{'deep/' * 30}m.py\", line {i}, in f\n" for i in range(20)) + "E   OSError: " + "x" * 200))
    return rows


def _long_pairs() -> list[Any]:
    from pytest_vaccbench.compare import ClassChange, Flip, Pair, Record
    from pytest_vaccbench.metrics import Agreement

    def record(precision: str, top1: float) -> Record:
        return Record("mobilenet_v2", LONG_KEY, "onnxruntime", precision, "ilsvrc2012-val-subset-of-a-long-name",
                      "f", 50000, top1, 90.0, "passed", None)

    flips = tuple(Flip(f"ILSVRC2012_val_{i:08d}_{'x' * 60}.JPEG", i, i + 1, i, i % 2 == 0, 5) for i in range(30))
    classes = tuple(ClassChange(i, 50, 40, 38) for i in range(10))
    return [Pair(record("fp32", 71.878), record(precision, 70.1), Agreement(50000, 48000, 1200, 800),
                 "", flips, classes) for precision in ("int8-kl_divergence", "int8-percentile")]


def _open(browser: Any, page: Path, width: int, height: int = 900) -> None:
    browser.set_window_size(width, height)
    browser.get(page.as_uri())
    assert browser.execute_script("return window.innerWidth") == width


def _open_everything(browser: Any) -> None:
    browser.execute_script("var b = document.querySelector('button[data-all=open]'); if (b) b.click();"
                           "document.querySelectorAll('details').forEach(d => { d.open = true; });")


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["green", "red", "strict", "compare", "stress", "compare-long"])
def test_nothing_is_clipped_and_nothing_scrolls_sideways(browser, pages, name, width):
    _open(browser, pages[name], width)
    if not name.startswith("compare"):
        banner = browser.find_element("id", "verdict")
        assert banner.is_displayed() and banner.rect["y"] < 200
        assert banner.text.startswith("GREEN" if name == "green" else "RED")
    for state in ("closed", "open"):
        if state == "open":
            _open_everything(browser)
        found = browser.execute_script(MEASURE)
        assert found["width"] == width
        assert found["wide"] == [], (state, found["wide"][:10])
        assert found["overflowing"] == [], (state, found["overflowing"][:10])
        assert found["scroll"] <= width


@pytest.mark.slow
def test_families_collapse_columns_sort_and_tests_open(browser, pages):
    from selenium.webdriver.common.by import By

    _open(browser, pages["red"], 1400)
    rows = lambda: [(tr.find_element(By.CSS_SELECTOR, "td").text, tr.find_elements(By.CSS_SELECTOR, "td")[2].text)
                    for tr in browser.find_elements(By.CSS_SELECTOR, "tbody.family:nth-of-type(2) tr.test")]
    assert [top1 for _, top1 in rows()] == ["-", "100.000", "-", "20.000"]
    top1 = browser.find_element(By.XPATH, "//table[@id='results']//th[text()='top1']")
    top1.click()
    assert [v for _, v in rows()] == ["20.000", "100.000", "-", "-"]  # ascending, no value last
    top1.click()
    assert [v for _, v in rows()] == ["100.000", "20.000", "-", "-"]
    assert top1.get_attribute("aria-sort") == "descending"

    test = browser.find_element(By.CSS_SELECTOR, "tbody.family:nth-of-type(2) tr.test")
    panel = browser.find_element(By.ID, "d" + test.get_attribute("id")[1:])
    assert not panel.is_displayed()
    test.click()
    assert panel.is_displayed() and "message" in panel.text
    family = browser.find_element(By.CSS_SELECTOR, "tbody.family:nth-of-type(2) button.fam")
    family.click()
    assert not test.is_displayed() and family.get_attribute("aria-expanded") == "false"
    family.click()
    assert test.is_displayed()

    # a failure group's test link opens the test's panel, its family open
    family.click()
    browser.find_element(By.CSS_SELECTOR, "#g0 summary").click()
    link = browser.find_element(By.CSS_SELECTOR, "#g0 li a")
    link.click()
    target = browser.find_element(By.ID, link.get_attribute("href").split("#")[1])
    assert target.is_displayed()
    assert browser.find_element(By.ID, "d" + target.get_attribute("id")[1:]).is_displayed()


@pytest.mark.slow
def test_a_row_passed_on_the_sampling_allowance_is_drawn_inside_its_band(browser, tmp_path):
    """Pixels of the two rows' gate plots as Chromium draws them (wide enough to see the
    tolerance inside the allowance)."""
    from PIL import Image

    from pytest_vaccbench.pages import page
    from pytest_vaccbench.report_html import gate_plot

    rows = _gated_rows()
    path = tmp_path / "plots.html"
    path.write_text(page("plots", "".join(f"<p>{gate_plot(row, 11.0, 600, 40)}</p>" for row in rows)))
    _open(browser, path, 1400)
    plots = browser.find_elements("css selector", "svg.gate")
    assert len(plots) == 2
    for plot, colour, inside in zip(plots, (0x2e7d32, 0xc62828), (True, False)):
        pixels = np.asarray(Image.open(io.BytesIO(plot.screenshot_as_png)).convert("RGB")).astype(int)
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]

        def near(c: int) -> np.ndarray:
            return (abs(r - (c >> 16)) < 8) & (abs(g - (c >> 8 & 255)) < 8) & (abs(b - (c & 255)) < 8)

        band = near(0xcfe8d0) | near(0xa5d6a7)  # the allowed band, its tolerance core darker
        xs = np.nonzero(band.sum(axis=0) >= 4)[0]  # anti-aliased edges do not count
        core = np.nonzero(near(0xa5d6a7).sum(axis=0) >= 4)[0]
        dot = np.nonzero(near(colour).sum(axis=0) >= 2)[0]
        assert dot.size > 3 and core.size > 3 and xs.size > core.size
        centre = (dot.min() + dot.max()) / 2
        assert (xs.min() < centre < xs.max()) == inside
        assert not core.min() <= centre <= core.max()  # outside the tolerance alone


@pytest.mark.slow
@pytest.mark.parametrize("name", ["green", "red", "strict"])
def test_screenshots(browser, pages, name, tmp_path):
    """The banner in its colour at the top; with VACCBENCH_SCREENSHOTS=DIR, the screenshot
    docs/reports.md shows (palette PNG, well under 200 KiB)."""
    from PIL import Image

    _open(browser, pages[name], 1200, 1000)
    if name != "strict":  # a test's panel open: int8 with its flipped photo, the stale baseline
        browser.find_element("css selector", {"green": "#t1", "red": "tr.test.stale"}[name]).click()
        browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    top = np.asarray(shot)[:220].astype(int)
    badge = (0x2e, 0x7d, 0x32) if name == "green" else (0xc6, 0x28, 0x28)
    assert (np.abs(top - badge).max(axis=2) < 8).sum() > 500
    folder = os.environ.get("VACCBENCH_SCREENSHOTS")
    target = Path(folder) / f"report-{name}.png" if folder else tmp_path / f"report-{name}.png"
    shot.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
    assert target.stat().st_size < 150 * 1024
