"""The HTML report on a tiny run set (smoothing and Kalman on synth_area2, 20 ms bins): a
self-contained page with every figure the runs allow, tables and settings, figures computed from
the arrays that were scored, and missing pieces turned into notes."""

from __future__ import annotations

import base64
import html
import math
import struct
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from nlb_suite.cli import main
from nlb_suite.datasets import get_spec
from nlb_suite.outputs.artifacts import latents_path, write_artifacts
from nlb_suite.outputs.results import RunRecord, read_records
from nlb_suite.pipeline import run_eval
from nlb_suite.report.html import REPORT_NAME, write_html_report
from nlb_suite.report.loading import View, gather_view
from nlb_suite.report.published import PUBLISHED_LABEL, published_results
from nlb_suite.report.tables import TableKey, format_value
from nlb_suite.report.views import (
    inputs_around_event,
    psth_comparison,
    single_trials,
    training_histories,
    velocity_comparison,
)

pytestmark = pytest.mark.slow

DATASET = "synth_area2"
BIN_MS = 20
KEY = TableKey(DATASET, "val", BIN_MS)
MODELS = {"smoothing": {}, "kalman": {"latent_dim": 6}}
DRAWN = ["Leaderboard chart", "Single trials", "PSTHs per condition", "Latent trajectories", "Rotations: the top jPC plane",
         "Behaviour: decoded hand velocity"]
OMITTED_WITHOUT_LFADS = ["Inferred inputs around the unpredictable input", "Training curves"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class RunSet:
    root: Path
    results: Path
    records: list[RunRecord]
    page: str


@pytest.fixture(scope="module")
def run_set(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> RunSet:
    folder = tmp_path_factory.mktemp("report-runs")
    results = folder / "results.jsonl"
    # One BLAS thread: on the few shared cores of CI, BLAS threads oversubscribe and crawl.
    with threadpool_limits(1):
        for model, overrides in MODELS.items():
            run_eval(DATASET, model, phase="val", bin_ms=BIN_MS, overrides=overrides, root=synthetic_root,
                     submissions_dir=folder / "submissions", results=results, n_boot=20)
        records = read_records(results)
        path = write_html_report(records, folder / "reports", root=synthetic_root)
    assert path == folder / "reports" / REPORT_NAME
    return RunSet(root=synthetic_root, results=results, records=records, page=path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def view(run_set: RunSet) -> View:
    return gather_view(run_set.records, KEY, run_set.root)


class _PageParser(HTMLParser):
    """Collects the page's tags with their attributes, and the text of figure and omission titles."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.figure_titles: list[str] = []
        self.omitted_titles: list[str] = []
        self._open: list[str] = []
        self._classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)
        self._classes.append(dict(attrs).get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()
            self._classes.pop()

    def handle_data(self, data: str) -> None:
        if self._open[-2:] == ["figcaption", "strong"]:
            self.figure_titles.append(data.rstrip("."))
        elif self._open and self._open[-1] == "strong" and "omitted" in self._classes[-2:-1]:
            self.omitted_titles.append(data)


def _parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    return parser


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk follows the signature
    return width, height


def test_page_is_self_contained_and_holds_every_figure_the_runs_allow(run_set: RunSet) -> None:
    parsed = _parse(run_set.page)
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith("data:"), f"<{tag} {name}={value[:60]!r}> loads something from outside"
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert "@import" not in run_set.page and "url(" not in run_set.page

    images = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == len(DRAWN)
    for source in images:
        assert source is not None and source.startswith("data:image/png;base64,")
        width, height = _png_size(base64.b64decode(source.split(",", 1)[1]))
        assert width > 100 and height > 100
    assert parsed.figure_titles == DRAWN
    # No LFADS run here: its figures are replaced by notes that say why.
    assert parsed.omitted_titles == OMITTED_WITHOUT_LFADS
    assert "no run saved inferred inputs" in run_set.page
    assert "no run saved training curves" in run_set.page
    # One leaderboard only: no selector.
    assert 'id="view-select"' not in run_set.page


def test_tables_show_every_run_with_its_metrics_and_settings(run_set: RunSet) -> None:
    page = run_set.page
    assert page.count('<table class="sortable leaderboard">') == 1
    assert page.count('<table class="sortable settings">') == 1
    for record in run_set.records:
        for key, value in record.metrics.items():
            low, high = record.cis.get(key, [math.nan, math.nan])
            assert html.escape(format_value(value, low, high)) in page, (record.model, key)
            assert f'data-sort="{float(value)!r}"' in page
        for name, value in record.hyperparameters.items():
            assert f"<code>{html.escape(f'{name}={value}')}</code>" in page
        assert record.hyperparameter_hash in page
        assert record.timestamp in page
        assert record.git_commit is None or record.git_commit[:10] in page
        assert html.escape(str(record.submission)) in page
    assert f"nlb_suite {run_set.records[0].package_version}" in page


def test_decoded_velocity_is_the_scored_decoding(run_set: RunSet, view: View) -> None:
    comparison = velocity_comparison(view)
    scored = {record.model: record.metrics["vel R2"] for record in run_set.records}
    assert {decoded.label: decoded.r2 for decoded in comparison.decoded} == pytest.approx(scored, abs=1e-9)
    assert math.isfinite(comparison.kalman.r2)
    # Trials come from both decode masks (passive bump and active reach trials).
    assert view.targets is not None and view.targets.eval_decode_mask is not None
    shown = [int(name.split()[1]) for name in comparison.trial_names]
    ids = view.tensors.eval_trials["trial_id"].to_numpy()
    masks = view.targets.eval_decode_mask[np.isin(ids, shown)]
    assert masks[:, 0].any() and masks[:, 1].any()
    assert np.array_equal(comparison.recorded, view.targets.eval_behavior[np.isin(ids, shown)], equal_nan=True)


def test_single_trials_and_psths_show_the_scored_arrays(view: View) -> None:
    trials = single_trials(view)
    assert view.targets is not None and view.true_rates is not None
    assert trials.true_rates is not None
    unit_ids = [int(name.split()[-1]) for name in trials.unit_names]
    columns = [int(np.flatnonzero(view.tensors.heldout_ids == unit)[0]) for unit in unit_ids]
    assert np.array_equal(trials.spikes, view.targets.eval_spikes_heldout[:3][:, :, columns], equal_nan=True)
    assert np.array_equal(trials.true_rates, view.true_rates.eval_rates_heldout[:3][:, :, columns])

    psths = psth_comparison(view)
    run = view.runs[0]
    first = next(c for c, members in enumerate(view.targets.eval_cond_idx) if len(members))
    unit_ids = [int(name.split()[-1]) for name in psths.unit_names]
    columns = [view.tensors.n_heldin + int(np.flatnonzero(view.tensors.heldout_ids == unit)[0]) for unit in unit_ids]
    members = view.targets.eval_cond_idx[first]
    all_units = np.concatenate([run.rates["eval_rates_heldin"], run.rates["eval_rates_heldout"]], axis=2)
    np.testing.assert_allclose(psths.predicted[run.label][0], all_units[members].mean(axis=0)[:, columns], rtol=1e-6)
    np.testing.assert_array_equal(psths.target[0], view.targets.psth[first][:, columns])


def test_inferred_inputs_are_aligned_on_the_bump(view: View) -> None:
    """An input that steps from 0 to 1 in each trial's bump bin (and, without a bump, in the bin
    of move onset) must come out as a step at lag 0 in both panels."""
    tensors = view.tensors
    assert tensors is not None
    trials = tensors.eval_trials
    window_start_ms = trials["move_onset_time"].to_numpy() * 1000 + get_spec(DATASET).window_ms[0]
    step_bin = np.where(trials["bump_time"].notna(),
                        np.floor((trials["bump_time"].to_numpy() * 1000 - window_start_ms) / BIN_MS),
                        -get_spec(DATASET).window_ms[0] // BIN_MS)
    step = (np.arange(tensors.n_bins)[None, :] >= step_bin[:, None]).astype(np.float32)[..., None]
    with_inputs = replace(view, runs=[replace(view.runs[0], latents={"eval_inputs": step})])
    aligned = inputs_around_event(with_inputs)
    run = aligned.runs[0]
    assert run.at_event.shape[0] == int(trials["bump_time"].notna().sum())
    assert run.at_alignment.shape[0] == int(trials["bump_time"].isna().sum())
    for panel in (run.at_event, run.at_alignment):
        expected = np.broadcast_to((aligned.lags_ms >= 0).astype(float)[None, :, None], panel.shape)
        seen = ~np.isnan(panel)
        assert seen[:, aligned.lags_ms == 0].all()
        np.testing.assert_array_equal(panel[seen], expected[seen])


def test_training_curves_are_read_from_the_latents_file(run_set: RunSet, tmp_path: Path) -> None:
    record = next(record for record in run_set.records if record.model == "kalman")
    submission = tmp_path / Path(str(record.submission)).name
    submission.write_bytes(Path(str(record.submission)).read_bytes())
    epochs = np.arange(5.0)
    history = {"epoch": epochs, "train_loss": 1 / (1 + epochs), "valid_loss": 1.2 / (1 + epochs),
               "valid_co_bps": 0.05 * epochs}
    write_artifacts(latents_path(submission), {}, history)
    trained = replace(record, submission=str(submission))
    # A data directory without the dataset: the runs' files are read all the same.
    histories = training_histories(gather_view([trained], KEY, tmp_path / "no-data"))
    np.testing.assert_array_equal(histories["kalman"].valid_co_bps, history["valid_co_bps"])
    np.testing.assert_array_equal(histories["kalman"].epoch, epochs)


def test_a_run_whose_submission_a_later_run_rewrote_is_not_drawn(run_set: RunSet, tmp_path: Path) -> None:
    from nlb_suite.core.atomic import file_sha256

    kalman, smoothing = (next(r for r in run_set.records if r.model == m) for m in ("kalman", "smoothing"))
    assert kalman.submission_sha256 == file_sha256(Path(str(kalman.submission)))
    shared = tmp_path / "synth_run.h5"  # one name, two runs: the second one's file is what is left
    shared.write_bytes(Path(str(smoothing.submission)).read_bytes())
    first = replace(kalman, submission=str(shared))
    view = gather_view([first], KEY, run_set.root)
    assert not view.runs and "now holds a later run's rates" in view.run_notes[0]
    shared.write_bytes(Path(str(kalman.submission)).read_bytes())  # its own file again: drawn
    assert [run.record for run in gather_view([first], KEY, run_set.root).runs] == [first]


def test_missing_data_and_files_become_notes(run_set: RunSet, tmp_path: Path) -> None:
    lost = replace(run_set.records[0], submission=str(tmp_path / "gone.h5"))
    path = write_html_report([lost, run_set.records[1]], tmp_path / "reports", root=tmp_path / "empty-data")
    page = path.read_text(encoding="utf-8")
    parsed = _parse(page)
    assert parsed.figure_titles == ["Leaderboard chart"]
    assert len(parsed.omitted_titles) == len(DRAWN) - 1 + len(OMITTED_WITHOUT_LFADS)
    assert "missing file(s)" in page  # the dataset is not in this data directory
    assert "gone.h5" in page and "file not found" in page
    assert [p.name for p in path.parent.iterdir()] == [REPORT_NAME]  # no temporary file left behind


def test_published_results_are_marked_as_such(run_set: RunSet, tmp_path: Path) -> None:
    relabelled = [replace(record, dataset="mc_maze_large", bin_ms=5) for record in run_set.records]
    page = write_html_report(relabelled, tmp_path / "reports", root=tmp_path / "no-data").read_text(encoding="utf-8")
    published = published_results("mc_maze_large", "val", 5)
    assert page.count("<tr class=published>") == 2 * len(published)  # leaderboard and settings rows
    for result in published:
        assert f"<td>{html.escape(result.method)} (published)</td>" in page
        assert html.escape(f"{PUBLISHED_LABEL}: {result.source}") in page
    assert _parse(page).figure_titles == ["Leaderboard chart"]


def test_report_command_writes_the_html_page(run_set: RunSet, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports"
    code = main(["report", "--html", "--results", str(run_set.results), "--out", str(out),
                 "--data-dir", str(tmp_path / "no-data")])
    assert code == 0
    assert f"wrote {out / REPORT_NAME}" in capsys.readouterr().out
    assert (out / "leaderboard.md").is_file() and (out / REPORT_NAME).is_file()


def test_claims_equal_a_direct_computation(view: View) -> None:
    """Each claim's value is what the metric functions give on the runs' arrays directly."""
    from nlb_suite.report.analysis import kalman_decoded, ridge_decoded
    from nlb_suite.report.claims import measure_claims
    from nlb_suite.report.views import condition_jpca, condition_means, jpca_inputs
    from nlb_suite.scoring.metrics import rate_r2

    claims = measure_claims(view)
    runs = {run.record.model: run for run in view.runs}
    truth = view.true_rates.all_units("eval")
    by_claim = {(row.claim, row.model, row.measured.split(":")[0]): row for row in claims.rows}
    first = next(row for key, row in by_claim.items() if key[0] == 1)
    expected = rate_r2(runs["kalman"].eval_rates_all(), truth) - rate_r2(runs["smoothing"].eval_rates_all(), truth)
    assert first.model == "kalman" and first.value == pytest.approx(expected, abs=1e-12)
    assert first.interval.low <= first.value <= first.interval.high
    wu = kalman_decoded(view.tensors, view.targets).r2
    decoding = [row for row in claims.rows if row.claim == 2]
    assert {row.model for row in decoding} == {"smoothing", "kalman"}
    kalman_rates = next(row for row in decoding if row.model == "kalman" and "rates" in row.measured)
    direct = ridge_decoded(runs["kalman"].train_rates_all(), runs["kalman"].eval_rates_all(), view.targets).r2 / wu
    assert kalman_rates.value == pytest.approx(direct, rel=1e-12)
    (rotation,) = [row for row in claims.rows if row.claim == 3]  # only Kalman saved latents
    inputs = jpca_inputs(view)
    result = condition_jpca(condition_means(runs["kalman"].latents["eval_latents"][:, inputs.window].astype(float),
                                            inputs.members))
    assert rotation.value == pytest.approx(result.r2_skew / result.r2_unconstrained, rel=1e-12)
    assert all(row.holds == (row.interval.low > 0) for row in claims.rows if row.claim == 1)


def test_report_shows_the_claims_and_the_jpca_plane(run_set: RunSet, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with threadpool_limits(1):
        assert main(["report", "--html", "--results", str(run_set.results), "--out", str(out),
                     "--data-dir", str(run_set.root)]) == 0
    page = (out / REPORT_NAME).read_text(encoding="utf-8")
    assert "The LFADS paper's claims, measured here" in page and "Rotations: the top jPC plane." in page
    markdown = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "### The LFADS paper's claims, measured here" in markdown
    assert "| 1: single-trial rates closer to the true rates" in markdown
