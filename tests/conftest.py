"""Shared fixtures: paths to the real data beside the repository, a private data directory,
and nlb_tools' own environment for the oracle comparisons."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_TEST_FILE = SHARED / "data/dandi/000140/sub-Jenkins/sub-Jenkins_ses-small_desc-test_ecephys.nwb"
YU2009_FILE = SHARED / "data/real/yu2009_pmd_delayed_reach_spikecounts.mat"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--oracle-env", default=str(REPO / ".venv-nlb-tools"),
                     help="folder for nlb_tools 0.0.4's pinned Python 3.10 environment")


@pytest.fixture(autouse=True, scope="session")
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's data directory or results store."""
    os.environ["NLB_SUITE_DATA"] = str(tmp_path_factory.mktemp("data"))
    os.environ["NLB_SUITE_RESULTS"] = str(tmp_path_factory.mktemp("results") / "results.jsonl")


@pytest.fixture(scope="session")
def real_test_file() -> Path:
    if not REAL_TEST_FILE.is_file():
        pytest.skip(f"real DANDI test file not found at {REAL_TEST_FILE}")
    return REAL_TEST_FILE


@pytest.fixture(scope="session")
def yu2009_file() -> Path:
    if not YU2009_FILE.is_file():
        pytest.skip(f"Yu 2009 spike counts not found at {YU2009_FILE}")
    return YU2009_FILE


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding the small synthetic datasets, generated once per session."""
    from nlb_suite.datasets import get_spec
    from nlb_suite.datasets.synthetic import ensure_generated

    root = tmp_path_factory.mktemp("synthetic-data")
    for name in ("synth_maze_small", "synth_area2", "synth_rtt_small", "synth_rsg_small"):
        ensure_generated(get_spec(name), root)
    return root


@pytest.fixture(scope="session")
def nlb_python(request: pytest.FixtureRequest) -> Path:
    """Python of nlb_tools 0.0.4's pinned environment, built on first use (skips without 3.10)."""
    script = SHARED / "tools/nlb_tools_env.sh"
    if not script.is_file() or shutil.which("bash") is None:
        pytest.skip("../shared/tools/nlb_tools_env.sh is not available")
    env_dir = request.config.getoption("--oracle-env")
    done = subprocess.run(["bash", str(script), env_dir], capture_output=True, text=True)
    if done.returncode == 3:
        pytest.skip("no Python 3.10 on this machine for nlb_tools' environment")
    if done.returncode != 0:
        pytest.fail(f"building nlb_tools' environment failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])
