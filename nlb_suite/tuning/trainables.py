"""The functions Ray Tune runs as trials (each in a Ray worker process, one CPU each).

`lfads_member`: one PBT member. It reports after every `perturbation_interval` epochs with a
checkpoint of its whole training state; when PBT makes it exploit another member, Ray restarts
it from that member's checkpoint with the perturbed hyperparameters, which it applies after
loading the state.

`model_trial`: one configuration of any model, fitted on part of the training trials and scored
on the rest (`validation.py`); under ASHA, scored after every epoch too.

Both see only `Tensors` (no evaluation targets exist in a study).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from ..core.arrays import Tensors
from ..models.base import EpochProgress, make_model
from .validation import ValidationSplit, validation_scores

OBJECTIVE = "objective"


def lfads_member(config: dict[str, Any], *, base: dict[str, Any], tensors: Tensors, interval: int) -> None:
    from ..models.lfads.member import Member

    member = Member(base | config, tensors)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            member.load(Path(folder))
        member.set_hyperparameters(config)  # the state came with its owner's values; take ours
    while not member.finished:
        metrics = member.train(interval)
        with tempfile.TemporaryDirectory() as folder:
            member.save(Path(folder))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def model_trial(config: dict[str, Any], *, model: str, base: dict[str, Any], split: ValidationSplit,
                each_epoch: bool = False) -> None:
    """Fit one configuration and report its validation scores. With `each_epoch` (ASHA), the
    scores of every epoch's weights are reported as the model trains, so that the scheduler can
    stop the trial between epochs; the last report is always that of the fitted model."""
    estimator = make_model(model, **(base | config))
    epochs = 0
    if each_epoch:
        assert isinstance(estimator, EpochProgress), f"{model} does not train in epochs"

        def report(epoch: int) -> None:
            nonlocal epochs
            epochs = epoch + 1
            scores = validation_scores(estimator.predict(split.tensors), split)
            tune.report({OBJECTIVE: scores["co_bps"], "epoch": epochs, **scores})

        estimator.on_epoch(report)
    estimator.fit(split.tensors)
    scores = validation_scores(estimator.predict(split.tensors), split)
    # The fitted model (an early-stopped one has its best epoch's weights) is the trial's result.
    tune.report({OBJECTIVE: scores["co_bps"], **({"epoch": epochs + 1} if each_epoch else {}), **scores})
