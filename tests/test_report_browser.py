"""The report in a real headless browser (Debian's chromium through chromedriver): it loads with no console
errors, every figure renders (the reproducibility and GPU busy share sections' too, the latter from synthetic
GPU tables since the tiny run is on the CPU), tables sort, markup in the data stays text; a screenshot is saved
to test-artifacts/ for a person to look at."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO
from test_report_sections import _gpu_frames, _order_frames, _render, _write_tables

from infbench.figures import FIGURES

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
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    yield session
    session.quit()


def test_report_loads_without_errors_and_every_figure_renders(tiny_run, browser):
    page = tiny_run / "report/index.html"
    browser.get(page.as_uri())
    images = browser.find_elements("css selector", "img")
    assert len(images) == len(FIGURES) - 1  # a CPU run has no GPU busy share figure, one line instead
    _assert_rendered(browser, images)
    assert browser.find_elements("css selector", "h2#rounds ~ figure img[alt^='Round medians']")
    assert "No GPU busy share" in browser.find_element("css selector", "h2#gpu-busy + p").text
    for section in ("#rounds", "#gpu-busy"):
        assert browser.find_elements("css selector", f"nav a[href='{section}']")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
    (ARTIFACTS / "report-size.txt").write_text(f"{page.stat().st_size} bytes\n")

    # sorting: click the median_ms header of the all-cells table twice, the column ends descending
    table = browser.find_element("css selector", "#cells ~ div.scroll table.data")
    headers = [th.text for th in table.find_elements("css selector", "thead th")]
    column = headers.index("median_ms")
    header = table.find_elements("css selector", "thead th")[column]
    header.click()
    header.click()
    values = [td.text for td in table.find_elements("css selector", f"tbody tr td:nth-child({column + 1})")]
    numbers = [float(v.replace(",", "")) for v in values if v not in ("–", "")]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 8


def test_markup_in_the_data_is_shown_as_text(tiny_run, browser, tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(tiny_run / "results/tables", tables)
    cells = pd.read_csv(tables / "cells.csv")
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    cells.loc[cells["status"] != "ok", "reason"] = hostile
    cells.to_csv(tables / "cells.csv", index=False)
    out = tmp_path / "index.html"
    config = (tiny_run / "tiny.yaml").read_text()
    import json

    import yaml

    subprocess.run([sys.executable, "-m", "scripts.render_report", "--tables-dir", str(tables), "--figures-dir",
                    str(tiny_run / "results/figures"), "--config", json.dumps(yaml.safe_load(config) | {"baseline": {"backend": "eager", "precision": "fp32"}}),
                    "--out", str(out)], cwd=REPO, check=True)
    browser.get(out.as_uri())
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no script from the data ran
    assert hostile in browser.find_element("css selector", "#not-ok ~ div.scroll").text


def test_gpu_sections_render_in_the_browser(browser, tmp_path):
    """Synthetic GPU tables: the GPU busy share heatmap renders, one note stands above the host-bound cells, and
    the tie's verdict names both backends."""
    _render(_write_tables(_gpu_frames(), tmp_path / "tables"), tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    images = browser.find_elements("css selector", "img")
    assert len(images) == len(FIGURES)
    _assert_rendered(browser, images)
    assert browser.find_elements("css selector", "h2#gpu-busy ~ figure img[alt^='GPU busy share']")
    notes = browser.find_elements("css selector", "p.host-bound-note")
    assert len(notes) == 1 and notes[0].is_displayed()
    host_bound = browser.find_element("css selector", "p.host-bound-note ~ div.scroll table.data")
    assert len(host_bound.find_elements("css selector", "tbody tr")) >= 2
    assert "≈" in browser.find_element("css selector", "div.tie").text
    wide = browser.find_element("css selector", "h3#wide-gpu-bound ~ div.scroll table.data")
    assert wide.is_displayed() and "SM clock" in wide.text and len(wide.find_elements("css selector", "tbody tr")) >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    browser.find_element("css selector", "h2#gpu-busy").location_once_scrolled_into_view  # noqa: B018
    browser.save_screenshot(str(ARTIFACTS / "report-gpu-busy.png"))


def test_level_order_renders_in_the_browser(browser, tmp_path):
    """Synthetic GPU tables whose two-level cell follows the round's order: the part under the wide GPU-bound
    cells is shown, with the one cell that goes with the level."""
    _render(_write_tables(_order_frames(), tmp_path / "tables"), tmp_path)
    browser.get((tmp_path / "index.html").as_uri())
    heading = browser.find_element("css selector", "h4#level-order")
    items = browser.find_elements("css selector", "h4#level-order ~ ul.level-order li")
    assert heading.is_displayed() and len(items) == 1 and items[0].text.startswith("after ort-fused/fp16: 0 %")
    _assert_rendered(browser, browser.find_elements("css selector", "img"))
