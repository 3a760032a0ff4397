"""The benchmark's public test-split ground truth, `eval_data_test.h5`, published by its authors
in the nlb_tools repository in January 2026 (EvalAI no longer scores submissions). It lives in the
data directory and is checked byte for byte (size and sha256) before use."""

from __future__ import annotations

from pathlib import Path

from ..core.spec import Asset
from .fetch import IntegrityError, verify_file
from .paths import MissingDataError, data_dir

TEST_TARGETS = Asset(path="eval_data_test.h5", size=105_927_616,
                     sha256="f2f434d30193251b58e6a693381fdd185c8fbc0e47d38f8810e65295bc42c865")
ORIGIN = ("the nlb_tools GitHub repository (https://github.com/neurallatents/nlb_tools), file "
          f"data/{TEST_TARGETS.path}, published by the benchmark's authors in January 2026")


def verified_test_targets(root: str | Path | None = None) -> Path:
    """The public test-split ground truth in the data directory, checked byte for byte."""
    path = data_dir(root) / TEST_TARGETS.path
    if not path.is_file():
        raise MissingDataError(f"test-split ground truth not found at {path}\nget it from {ORIGIN}, "
                               "and put it in the data directory (or pass --data-dir)")
    try:
        verify_file(path, TEST_TARGETS)
    except IntegrityError as err:
        raise type(err)(path, f"{err.problem}: it is truncated, altered or another file (a Git LFS pointer, "
                              f"if cloned without LFS); get it again from {ORIGIN}") from None
    return path
