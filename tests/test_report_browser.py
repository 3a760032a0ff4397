"""The HTML report as a person sees it: opened in headless Chromium (Debian's `chromium`, driven
by Playwright), with its tables, every figure decoded, the settings, sorting by a header click,
the leaderboard selector, no console errors and no request leaving the file. A screenshot is
saved under the test's tmp folder, and copied to $NLB_SUITE_SCREENSHOT_DIR when that is set.

Skips where /usr/bin/chromium or the playwright package is absent (CI installs both)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from nlb_suite.outputs.results import RunRecord, read_records
from nlb_suite.pipeline import run_eval
from nlb_suite.report.html import write_html_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_DIR_VAR = "NLB_SUITE_SCREENSHOT_DIR"
BIN_MS = 20
# Two leaderboards (so the page has a selector); on synth_area2 two runs of one model, which the
# page tells apart by their hyperparameter hash.
RUNS = (("synth_area2", {"latent_dim": 4}), ("synth_area2", {"latent_dim": 6}), ("synth_maze_small", {"latent_dim": 4}))
FIGURES_PER_VIEW = 6  # chart, single trials, PSTHs, trajectories, jPCA plane, velocity (no LFADS run here)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@dataclass
class OpenReport:
    records: list[RunRecord]
    page: sync_api.Page
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def report(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenReport]:
    folder = tmp_path_factory.mktemp("browser-report")
    results = folder / "results.jsonl"
    # One BLAS thread: on the few shared cores of CI, BLAS threads oversubscribe and crawl.
    with threadpool_limits(1):
        for dataset, overrides in RUNS:
            run_eval(dataset, "kalman", phase="val", bin_ms=BIN_MS, overrides=overrides, root=synthetic_root,
                     submissions_dir=folder / "submissions", results=results, n_boot=20)
        records = read_records(results)
        path = write_html_report(records, folder / "reports", root=synthetic_root)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        opened = OpenReport(records=records, page=page)
        page.on("console", lambda message: opened.console_errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: opened.console_errors.append(str(error)))
        page.on("request", lambda request: opened.outside_requests.append(request.url)
                if not request.url.startswith(("file:", "data:")) else None)
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        yield opened
        browser.close()


def _column_values(table: sync_api.Locator, column: int) -> list[str]:
    return [row.locator("td").nth(column).get_attribute("data-sort") or row.locator("td").nth(column).inner_text()
            for row in table.locator("tbody tr").all()]


def test_tables_figures_and_settings_appear(report: OpenReport) -> None:
    page = report.page
    sections = page.locator("section.view")
    assert sections.count() == 2
    visible = page.locator("section.view:visible")
    assert visible.count() == 1
    leaderboard = visible.locator("table.leaderboard")
    area2_runs = [record for record in report.records if record.dataset == "synth_area2"]
    assert leaderboard.locator("tbody tr").count() == len(area2_runs)
    labels = leaderboard.locator("tbody td:first-child").all_inner_texts()
    assert sorted(labels) == sorted(f"kalman [{record.hyperparameter_hash}]" for record in area2_runs)

    images = page.evaluate("""async () => {
        const images = Array.from(document.images);
        await Promise.all(images.map(image => image.decode()));
        return images.map(image => [image.alt, image.naturalWidth, image.naturalHeight]);
    }""")
    assert len(images) == 2 * FIGURES_PER_VIEW
    for alt, width, height in images:
        assert width > 0 and height > 0, alt
    for image in visible.locator("img").all():
        assert image.is_visible() and image.bounding_box()["width"] > 100

    settings = " ".join(page.locator("table.settings").all_text_contents())
    for record in report.records:
        assert record.hyperparameter_hash in settings
        assert record.timestamp in settings
        assert f"latent_dim={record.hyperparameters['latent_dim']}" in settings
        assert record.git_commit is None or record.git_commit[:10] in settings


def test_clicking_a_header_sorts_the_table(report: OpenReport) -> None:
    table = report.page.locator("section.view:visible table.leaderboard")
    header = table.locator("th", has_text="co-bps").first
    column = table.locator("th").all_inner_texts().index(header.inner_text())
    header.click()
    descending = [float(value) for value in _column_values(table, column)]
    assert descending == sorted(descending, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    ascending = [float(value) for value in _column_values(table, column)]
    assert ascending == sorted(ascending) and ascending != descending
    assert header.get_attribute("aria-sort") == "ascending"

    settings = report.page.locator("section.view:visible table.settings")
    settings.locator("th", has_text="hash").click()
    hashes = _column_values(settings, 2)
    assert hashes == sorted(hashes)


def test_selector_switches_between_leaderboards(report: OpenReport) -> None:
    page = report.page
    options = page.locator("#view-select option")
    assert options.all_inner_texts() == ["synth_area2, val phase, 20 ms bins",
                                         "synth_maze_small, val phase, 20 ms bins"]
    page.select_option("#view-select", index=1)
    visible = page.locator("section.view:visible")
    assert visible.count() == 1
    assert visible.locator("h2").inner_text() == "synth_maze_small, val phase, 20 ms bins"
    assert visible.locator("table.leaderboard tbody tr").count() == 1
    page.select_option("#view-select", index=0)
    assert page.locator("section.view:visible h2").inner_text() == "synth_area2, val phase, 20 ms bins"


def test_no_console_errors_nor_outside_requests_and_a_screenshot(report: OpenReport, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    report.page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get(SCREENSHOT_DIR_VAR)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / "report_screenshot.png")
    assert report.console_errors == []
    assert report.outside_requests == []
