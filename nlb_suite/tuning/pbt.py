"""AutoLFADS' population-based training on Ray Tune's scheduler (Keshtkaran et al. 2022, as
lfads-torch runs it).

Ray's `PopulationBasedTraining` (synchronous: every member reaches the perturbation epoch, then
one round) with two changes:
- exploit by binary tournament: the members are paired at random each round; in each pair the
  one with the worse objective copies the other's checkpoint (weights, optimiser state, curves).
  Ray's default instead clones a random member of the top quantile into the bottom quantile.
- explore by scaling: each searched value of the winner is multiplied by a factor drawn
  uniformly from [1 - w, 1 + w] and clipped to its range (a choice is kept). Ray's default
  multiplies by 0.8 or 1.2 or resamples.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from .space import Dimension


class BinaryTournamentPBT(PopulationBasedTraining):
    """PBT whose rounds pair members at random: losers take the winner's state and its
    hyperparameters scaled by 1 +/- U(0, `explore`). `space` gives the ranges."""

    def __init__(self, *, space: tuple[Dimension, ...], explore: float, seed: int, last_epoch: int, **kwargs: Any):
        self._space = space
        self._last_epoch = last_epoch
        self._explore = explore
        self._rng = random.Random(seed)
        self._winner_of: dict[Trial, Trial] = {}
        super().__init__(hyperparam_mutations={dim.name: dim.ray_domain() for dim in space}, synch=True, **kwargs)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        # No round at the end of the budget: a member exploiting then would restart only to stop,
        # left with its winner's results instead of its own.
        if result.get(self._time_attr, 0) >= self._last_epoch:
            return str(TrialScheduler.CONTINUE)
        before = self._next_perturbation_sync
        decision = str(super().on_trial_result(tune_controller, trial, result))
        # A restored study starts the scheduler afresh, its next synchronous round at the first
        # interval while the members resume later; after their first round there, Ray's update
        # leaves the next round at the members' current epoch, and no paused member is ever
        # resumed. After a round, the next one is at least an interval past the epoch reached.
        reached = max((state.last_train_time for state in self._trial_state.values()), default=0)
        if self._next_perturbation_sync != before and self._next_perturbation_sync <= reached:
            self._next_perturbation_sync = reached + self._perturbation_interval
        return decision

    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        """(losers, winners) of this round's pairs; a member left without a partner (odd
        population) is in neither and goes on unchanged."""
        ranked = [trial for trial, state in self._trial_state.items()
                  if state.last_score is not None and not trial.is_finished()]
        self._rng.shuffle(ranked)
        losers, winners = [], []
        self._winner_of = {}
        for first, second in zip(ranked[0::2], ranked[1::2]):
            # Ray stores scores with the sign that makes larger better.
            first_score, second_score = self._trial_state[first].last_score, self._trial_state[second].last_score
            assert first_score is not None and second_score is not None  # ranked only with a score
            if first_score >= second_score:
                winner, loser = first, second
            else:
                winner, loser = second, first
            winners.append(winner)
            losers.append(loser)
            self._winner_of[loser] = winner
        return losers, winners

    def _checkpoint_or_exploit(self, trial: Trial, tune_controller: Any, upper_quantile: list[Trial],
                               lower_quantile: list[Trial]) -> None:
        # A loser exploits its own pair's winner, not a random winner.
        if trial in self._winner_of:
            super()._checkpoint_or_exploit(trial, tune_controller, [self._winner_of[trial]], [trial])
        else:
            super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, [])

    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict[str, Any], dict[str, Any]]:
        config = copy.deepcopy(trial_to_clone.config)
        operations: dict[str, Any] = {}
        for dim in self._space:
            if dim.choices is not None:
                continue
            weight = self._explore if dim.explore is None else dim.explore
            factor = self._rng.uniform(1.0 - weight, 1.0 + weight)
            config[dim.name] = dim.clip(config[dim.name] * factor)
            operations[dim.name] = f"* {factor:.3f}"
        return config, operations
