"""Hyperparameter studies on Ray Tune: the search space from a model's `[search]` table
(`space.py`), AutoLFADS' population-based training (`pbt.py`), the trials Ray runs
(`trainables.py`), scoring on training trials only (`validation.py`), progress and the stopper
(`progress.py`), one study in its folder (`study.py`), where Ray runs (`cluster.py`).

Ray is imported only by the modules that need it, when a study runs."""
