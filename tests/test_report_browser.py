"""The report in a real headless browser (Debian's chromium through chromedriver) at 1440 × 900: the answer box
is on the first screen and names a backend with a latency in ms; with details closed the page is at most five
screens (the CPU run's and the H100 reference's) and nothing overflows sideways; a CPU run shows no GPU section;
a run with useless intervals carries the banner; every figure renders, tables sort, markup in the data stays
text. Screenshots are saved to test-artifacts/ for a person to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO
from test_report_sections import BASELINE, _gpu_frames, _order_frames, _render, _write_tables

from infbench import config as config_io
from infbench import figures, report, tables
from infbench.figures import FIGURES
from infbench.workloads.generate import tables as generation_tables

ARTIFACTS = REPO / "test-artifacts"


def _assert_rendered(browser, images) -> None:
    """Every image decoded to a real picture and the page logged no error."""
    for image in images:
        loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        assert loaded and loaded > 100, image.get_attribute("alt")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements-test.txt")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1440,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield session
    session.quit()


SCREEN = 900
REFERENCE = REPO / "report/reference/h100"


def _page_checks(browser, screenshot: str) -> dict:
    """What a newcomer sees at 1440 × 900 with every details closed: where the answer box is, the page's
    height, whether anything overflows sideways; and a screenshot of the first screen."""
    browser.set_window_size(1440, SCREEN)
    geometry = browser.execute_script("""
        const box = document.getElementById('answer').getBoundingClientRect();
        return {answerTop: box.top + window.scrollY, answerBottom: box.bottom + window.scrollY,
                height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
                viewport: window.innerWidth, answer: document.getElementById('answer').innerText};""")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / screenshot))
    return geometry


def _answer_is_first_and_short(geometry: dict) -> None:
    assert geometry["answerTop"] < SCREEN / 3 and geometry["answerBottom"] <= SCREEN, geometry
    assert re.search(r"(PyTorch|torch\.compile|ONNX Runtime|AOTInductor|TensorRT)[^\n]* at [^\n]*\d ms", geometry["answer"])
    assert geometry["height"] <= 5 * SCREEN, f"{geometry['height'] / SCREEN:.1f} screens"
    assert geometry["width"] <= geometry["viewport"], "the page overflows sideways"


def test_cpu_report_answers_on_the_first_screen(tiny_run, browser):
    page = tiny_run / "report/index.html"
    browser.get(page.as_uri())
    geometry = _page_checks(browser, "report.png")
    _answer_is_first_and_short(geometry)
    (ARTIFACTS / "report-size.txt").write_text(f"{page.stat().st_size} bytes, {geometry['height'] / SCREEN:.1f} screens\n")
    images = browser.find_elements("css selector", "img")
    assert len(images) == len(FIGURES) - 1  # a CPU run has no GPU busy share figure
    _assert_rendered(browser, images)
    assert not browser.find_elements("css selector", "#gpu-busy")  # no section for a device the run did not use
    assert all(not d.get_attribute("open") for d in browser.find_elements("css selector", "details"))

    # sorting: open the all-cells table, click the latency header twice, the column ends descending
    browser.find_element("css selector", "details#cells summary").click()
    table = browser.find_element("css selector", "details#cells table.data")
    headers = [th.text for th in table.find_elements("css selector", "thead th")]
    column = headers.index("Latency (ms)")
    header = table.find_elements("css selector", "thead th")[column]
    header.click()
    header.click()
    values = [td.text for td in table.find_elements("css selector", f"tbody tr td:nth-child({column + 1})")]
    numbers = [float(v.replace(",", "")) for v in values if v not in ("–", "")]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 8


def test_h100_reference_reads_in_five_screens(browser, tmp_path):
    """The published H100 reference, rendered from its own tables with this code."""
    frames = tables.read_all(REFERENCE)
    config = config_io.load(REPO / "config/gpu.yaml")
    import json

    paths = figures.write_all(frames, config["baseline"], tmp_path / "figures",
                              json.loads((REFERENCE / "peaks.json").read_text()))
    report.render(frames, paths, config, tmp_path / "index.html", evidence="reproducibility/")
    browser.get((tmp_path / "index.html").as_uri())
    geometry = _page_checks(browser, "reference.png")
    _answer_is_first_and_short(geometry)
    assert "ONNX Runtime fused + CUDA graphs fp16" in geometry["answer"]
    assert re.search(r"Not measured: TensorRT: 36 unavailable", geometry["answer"])
    assert "Reproducibility evidence" in geometry["answer"]
    _assert_rendered(browser, browser.find_elements("css selector", "img"))


def test_generation_reference_answers_alone_on_the_first_screen(browser, tmp_path):
    """The published generation reference (a run that only generated), rendered from its own tables: the answer
    names a backend with a time per token on the first screen; no empty forward section; short."""
    import json

    gen_reference = REPO / "report/reference/h100-generation"
    frames = {**tables.read_all(gen_reference), **generation_tables.read_all(gen_reference)}
    config = config_io.load(REPO / "config/gpu-generation.yaml")
    paths = figures.write_all(frames, {"backend": None, "precision": None}, tmp_path / "figures",
                              json.loads((gen_reference / "peaks.json").read_text()))
    report.render(frames, paths, config, tmp_path / "index.html")
    browser.get((tmp_path / "index.html").as_uri())
    geometry = _page_checks(browser, "generation-reference.png")
    assert geometry["answerTop"] < SCREEN / 3 and geometry["answerBottom"] <= SCREEN, geometry
    assert re.search(r"static-cache loop[^\n]* at batch [^\n]*\d ms per token", geometry["answer"])
    assert geometry["height"] <= 3 * SCREEN, f"{geometry['height'] / SCREEN:.1f} screens"
    assert geometry["width"] <= geometry["viewport"], "the page overflows sideways"
    assert not browser.find_elements("css selector", "#fastest") and not browser.find_elements("css selector", "#figures")
    _assert_rendered(browser, browser.find_elements("css selector", "img"))


def test_useless_intervals_carry_a_banner(browser, tmp_path):
    """Synthetic tables whose intervals are ±90 %: the banner is on the first screen and says what to do."""
    frames = _gpu_frames()
    cells = frames["cells"]
    frames["cells"] = cells.assign(ci_lo_ms=cells["median_ms"] * 0.1, ci_hi_ms=cells["median_ms"] * 1.9)
    _render(_write_tables(frames, tmp_path / "tables"), tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    banner = browser.find_element("css selector", "#banner")
    assert banner.is_displayed() and banner.location["y"] < SCREEN
    assert "cannot rank" in banner.text and "idle machine" in banner.text
    _render(_write_tables(_gpu_frames(), tmp_path / "plain-tables"), tmp_path / "plain")
    browser.get((tmp_path / "plain/index.html").as_uri())
    assert not browser.find_elements("css selector", "#banner")


def test_markup_in_the_data_is_shown_as_text(tiny_run, browser, tmp_path):
    tables_dir = tmp_path / "tables"
    shutil.copytree(tiny_run / "results/tables", tables_dir)
    cells = pd.read_csv(tables_dir / "cells.csv")
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    cells.loc[cells["status"] != "ok", "reason"] = hostile
    cells.to_csv(tables_dir / "cells.csv", index=False)
    out = tmp_path / "index.html"
    config = (tiny_run / "tiny.yaml").read_text()
    import json

    import yaml

    subprocess.run([sys.executable, "-m", "scripts.render_report", "--tables-dir", str(tables_dir), "--figures-dir",
                    str(tiny_run / "results/figures"), "--config", json.dumps(yaml.safe_load(config) | {"baseline": {"backend": "eager", "precision": "fp32"}}),
                    "--out", str(out)], cwd=REPO, check=True)
    browser.get(out.as_uri())
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no script from the data ran
    browser.find_element("css selector", "details#not-ok summary").click()
    assert hostile in browser.find_element("css selector", "details#not-ok div.scroll").text


def test_gpu_sections_render_in_the_browser(browser, tmp_path):
    """Synthetic GPU tables: the GPU busy share heatmap renders when opened, one note stands above the host-bound
    cells, and the tie reads "Either A or B" in the answer."""
    _render(_write_tables(_gpu_frames(), tmp_path / "tables"), tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    images = browser.find_elements("css selector", "img")
    assert len(images) == len(FIGURES) - 1  # no generation cells in these tables: no generation figure
    _assert_rendered(browser, images)
    browser.find_element("css selector", "details#gpu-busy summary").click()
    assert browser.find_element("css selector", "details#gpu-busy img[alt^='GPU busy share']").is_displayed()
    notes = browser.find_elements("css selector", "p.host-bound-note")
    assert len(notes) == 1 and notes[0].is_displayed()
    host_bound = browser.find_element("css selector", "p.host-bound-note ~ div.scroll table.data")
    assert len(host_bound.find_elements("css selector", "tbody tr")) >= 2
    assert "Either TensorRT fp16 or ONNX Runtime fp16" in browser.find_element("css selector", "#answer li.tie").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.find_element("css selector", "details#gpu-busy").location_once_scrolled_into_view  # noqa: B018
    browser.save_screenshot(str(ARTIFACTS / "report-gpu-busy.png"))


def test_level_order_renders_in_the_browser(browser, tmp_path):
    """Synthetic GPU tables whose two-level cell follows the round's order: the rounds diagnostics name the one
    cell that goes with the level."""
    _render(_write_tables(_order_frames(), tmp_path / "tables"), tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    browser.find_element("css selector", "details#rounds summary").click()
    heading = browser.find_element("css selector", "h4#level-order")
    items = browser.find_elements("css selector", "h4#level-order ~ ul.level-order li")
    assert heading.is_displayed() and len(items) == 1 and items[0].text.startswith("after ort-fused/fp16: 0 %")
    _assert_rendered(browser, browser.find_elements("css selector", "img"))
