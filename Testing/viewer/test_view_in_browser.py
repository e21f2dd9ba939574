"""``smartnet view`` in a real browser: Debian's headless Chromium driven by Selenium through chromedriver.

The real CLI analyses two cases (the sample head CT and a negative phantom as a DICOM series), the real
``smartnet view`` serves them (each tab its own page process with trame-slicer on slicer-core, in
``.venv-web``), and the page is checked against ``report.json``: the case list, the findings table, the views
(non-blank, segment colours present), the activation toggle, jumping to a finding, a second tab, and that the
output folder is left as it was. The launcher is stopped by its PID (SIGINT, as Ctrl-C).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ENGINE_PARENT, head_phantom, write_dicom_series
from SMARTNetLib.client import analysis_results
from SMARTNetLib.commands.demo import SAMPLE_CT
from SMARTNetLib.contracts.classes import get_class
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.report import read_report
from SMARTNetSlicerLib.offscreen_views import colour_pixels
from SMARTNetViewer.cases import case_warnings
from SMARTNetViewer.launcher import web_python

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000")
SCREENSHOTS = os.environ.get("SMARTNET_VIEW_SCREENSHOTS")  # also keep the screenshots there (the README's)


def _web_python() -> str | None:
    try:
        return web_python()
    except SmartNetError:
        return None


pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file() and _web_python()),
    reason="needs Debian's chromium and chromium-driver and the web environment (bash scripts/setup.sh --test)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 90.0, every: float = 0.5, what: str = "the page"):
    """``condition()``'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def folder_state(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """An output folder of the real CLI with three cases: the sample head CT (bleeds), a negative DICOM series,
    and slicerio's real chest CT (read in place; the model warns that it is unlike its training data)."""
    import slicerio

    root = tmp_path_factory.mktemp("view")
    ct, _ = head_phantom(bleed=False)
    dicom = write_dicom_series(ct, root / "negative_dicom")
    sample = root / "sample_head_ct.nii.gz"
    shutil.copy(SAMPLE_CT, sample)
    out = root / "out"
    env = {**os.environ, "PYTHONPATH": ENGINE_PARENT}
    chest = Path(slicerio.__file__).parent / "data" / "CTChest4.nrrd"
    subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", "analyze", str(sample), str(dicom), str(chest),
                    "-o", str(out), "--device", "cpu"], check=True, env=env, capture_output=True, timeout=600)
    return out


@pytest.fixture()
def viewer(analysed):
    """The launcher as the user starts it; stopped by its PID (SIGINT) at the end, its exit checked."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "SMARTNetLib.cli", "view", str(analysed), "--port", str(port),
                                "--idle-timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": ENGINE_PARENT})

    def listening() -> bool:
        assert process.poll() is None, process.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, 60, what="smartnet view to listen")
    yield f"http://127.0.0.1:{port}/", process
    if process.poll() is None:  # the test failed before it stopped the viewer
        process.kill()
        process.wait(30)


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def views(driver) -> list[np.ndarray]:
    """The four view panes (coronal, sagittal, 3D, axial in the quad layout) as pixels."""
    from selenium.webdriver.common.by import By

    return [png_pixels(e.screenshot_as_png) for e in driver.find_elements(By.CSS_SELECTOR, ".layout-grid-item")]


def page_text(driver, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def case_rows(driver) -> list[str]:
    return page_text(driver, "#case-list tbody tr")


def click(driver, element) -> None:
    """Click ``element`` as a user would after scrolling it into the drawer's view."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def select_case(driver, index: int) -> None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#case-list tbody tr")
    click(driver, rows[index].find_element(By.CSS_SELECTOR, "input"))


def saturated_pixels(pixels: np.ndarray) -> int:
    """Coloured pixels (segments, heat) as opposed to the grey CT and the 3D view's grey background."""
    px = pixels.astype(float)
    high, low = px.max(axis=-1), px.min(axis=-1)
    return int((((high - low) / np.maximum(high, 1) > 0.3) & (high > 40)).sum())


def table_matches(driver, report: dict) -> bool:
    _, rows = analysis_results.findings_table(report)
    shown = [" ".join(cell for cell in row if cell) for row in rows]
    return page_text(driver, "#findings .finding-row") == shown


def showing(driver, name: str, report: dict) -> bool:
    """The page shows case ``name``: its title, its table, and four rendered (non-blank) views."""
    if page_text(driver, "#case-name") != [name] or not table_matches(driver, report):
        return False
    panes = views(driver)
    return len(panes) == 4 and all(p.std() > 8 for p in panes)


def save(driver, name: str, tmp_path: Path) -> np.ndarray:
    png = driver.get_screenshot_as_png()
    (tmp_path / name).write_bytes(png)
    if SCREENSHOTS:
        Path(SCREENSHOTS, name).write_bytes(png)
    return png_pixels(png)


def test_results_in_the_browser(analysed, viewer, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, launcher = viewer
    before = folder_state(analysed)
    sample = read_report(analysed / "sample_head_ct" / "report.json")
    negative = read_report(analysed / "negative_dicom" / "report.json")
    chest = read_report(analysed / "CTChest4" / "report.json")
    iph, sdh = get_class("intraparenchymal"), get_class("subdural")
    assert sample["findings"]["intraparenchymal"]["volume_ml"] > 1 and sample["findings"]["subdural"]["volume_ml"] > 1

    browser.get(url)
    wait_for(lambda: len(case_rows(browser)) == 3, what="the case list")
    first_port = browser.current_url.split(":")[2].split("/")[0]
    assert first_port != url.split(":")[2].strip("/")  # redirected to this session's own page process
    rows = case_rows(browser)
    listed = (("CTChest4", chest), ("negative_dicom", negative), ("sample_head_ct", sample))
    assert len(rows) == len(listed)
    for row, (name, report) in zip(rows, listed):
        assert row.split() == [name, f"{report['ich_probability']:.3f}".rstrip("0").rstrip("."),
                               f"{report['total_volume_ml']:.2f}".rstrip("0").rstrip("."),
                               str(len(case_warnings(report)))], row

    # The first case is shown: the chest CT, with the engine's input-familiarity warning and the synthetic notice.
    wait_for(lambda: showing(browser, "CTChest4", chest), what="the chest CT")
    warnings = page_text(browser, ".case-warning")
    assert warnings == case_warnings(chest) and len(warnings) >= 2, warnings
    assert any("unlike the model's training data" in w for w in warnings) and "synthetic data only" in warnings[-1]

    # The negative DICOM series, read as the engine read it (the series the report names).
    select_case(browser, 1)
    wait_for(lambda: showing(browser, "negative_dicom", negative), what="the negative case")
    assert page_text(browser, ".case-warning") == case_warnings(negative)
    assert page_text(browser, ".jump-button") == []

    # The sample head: its table, its segments' colours in the slice and 3D views.
    select_case(browser, 2)
    wait_for(lambda: showing(browser, "sample_head_ct", sample), what="the sample head")
    panes = wait_for(lambda: (p := views(browser)) and colour_pixels(p[3], iph.color) > 50 and p, what="IPH colour")
    assert colour_pixels(panes[2], iph.color) > 200, "the IPH surface in the 3D view"
    save(browser, "smartnet-view.png", tmp_path)
    jumps = page_text(browser, ".jump-button")
    assert [j.split(":")[0].lower() for j in jumps] == ["jump to largest intraparenchymal (iph)",
                                                        "jump to largest subdural (sdh)"]

    # Activation map off: the slice views lose the heat overlay, and only that.
    with_heat = views(browser)
    click(browser, browser.find_element(By.ID, "toggle-activation"))
    without = wait_for(lambda: (p := views(browser)) and np.abs(p[3].astype(int) - with_heat[3]).mean() > 1 and p,
                       what="the activation map to go")
    assert colour_pixels(without[3], iph.color) > 50  # the segmentation stays
    save(browser, "smartnet-view-no-activation.png", tmp_path)

    # Activation back on, then its opacity to 0 with the slider's keyboard (Home): the heat goes again.
    click(browser, browser.find_element(By.ID, "toggle-activation"))
    wait_for(lambda: np.abs(views(browser)[3].astype(int) - with_heat[3]).mean() < 0.5, what="the activation back")
    from selenium.webdriver.common.keys import Keys

    thumb = browser.find_element(By.CSS_SELECTOR, "#activation-opacity [role='slider'], .v-slider-thumb[role='slider']")
    click(browser, thumb)
    thumb.send_keys(Keys.HOME)

    def closer_to_no_heat() -> bool:
        axial = views(browser)[3].astype(int)
        return np.abs(axial - without[3]).mean() < 0.5 * np.abs(axial - with_heat[3]).mean()

    wait_for(closer_to_no_heat, what="opacity 0 to look like no activation map")

    # Jump to the subdural: the axial view moves to its slice, and shows it.
    axial = views(browser)[3]
    click(browser, browser.find_elements(By.CSS_SELECTOR, ".jump-button")[1])
    moved = wait_for(lambda: (p := views(browser)) and np.abs(p[3].astype(int) - axial).mean() > 1 and p,
                     what="the jump")
    save(browser, "smartnet-view-subdural.png", tmp_path)
    assert colour_pixels(moved[3], sdh.color, saturation=0.2) > 30  # its outline (a pale pink)

    # Segmentation off: the 3D view empties; the activation map rendered in 3D fills it with heat.
    click(browser, browser.find_element(By.ID, "toggle-segmentation"))
    wait_for(lambda: saturated_pixels(views(browser)[2]) < 50, what="the surfaces to go")
    click(browser, browser.find_element(By.ID, "toggle-activation-3d"))
    wait_for(lambda: saturated_pixels(views(browser)[2]) > 500, what="the 3D activation map")
    save(browser, "smartnet-view-activation-3d.png", tmp_path)

    # A second tab gets its own scene: switching case there leaves the first tab's case.
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(url)
    wait_for(lambda: len(case_rows(browser)) == 3, what="the second tab")
    assert browser.current_url.split(":")[2].split("/")[0] != first_port
    wait_for(lambda: showing(browser, "CTChest4", chest), what="the second tab's first case")
    header = browser.find_element(By.XPATH, "//*[@id='case-list']//th[.//*[text()='ICH p']]")
    click(browser, header)
    click(browser, header)  # descending
    by_probability = [name for name, report in sorted(listed, key=lambda c: -c[1]["ich_probability"])]
    wait_for(lambda: [r.split()[0] for r in case_rows(browser)] == by_probability,
             what="the case list sorted by probability")
    browser.switch_to.window(first)
    time.sleep(2)
    assert showing(browser, "sample_head_ct", sample)
    select_case(browser, 1)
    wait_for(lambda: showing(browser, "negative_dicom", negative), what="switching back")

    # Stopped by its PID as with Ctrl-C: a clean exit, and the output folder as it was.
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0, launcher.stderr.read()
    assert "smartnet view stopped" in launcher.stdout.read()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(first_port)), timeout=2).close()
    assert folder_state(analysed) == before
