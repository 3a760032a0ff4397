"""A wheel built from the repository runs with its own hyperparameter files: installed into a fresh
virtual environment (its dependencies borrowed from this one), run from a folder with no
`baselines/` beside it, `eval` takes GPFA's latent_dim from the TOML the wheel carries."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_uses_the_packaged_hyperparameters(synthetic_root: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("nlb_suite-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    own_site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies come from this environment's site-packages, added as a plain path: its
    # .pth files (among them this checkout's editable install) are not processed.
    (own_site / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(own_site),
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NLB_SUITE_BASELINES"}
    env |= {"NLB_SUITE_DATA": str(synthetic_root), "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    where = subprocess.run([str(python), "-c", "import nlb_suite; print(nlb_suite.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(own_site)), where
    results = work / "results.jsonl"
    done = subprocess.run(
        [str(python), "-m", "nlb_suite.cli", "eval", "--model", "gpfa", "--dataset", "synth_maze_small",
         "--bin", "20", "--set", "n_iter=5", "--n-boot", "10", "--results", str(results)],
        cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(results.read_text().splitlines()[0])
    assert record["hyperparameters"]["latent_dim"] == 12  # [synth_maze_small] of the packaged gpfa.toml
    assert record["hyperparameters"]["n_iter"] == 5
