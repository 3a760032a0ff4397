"""The core everything stands on: errors (`errors.py`), the dataset specification (`spec.py`), the
array types that pass between layers (`arrays.py`: Tensors, EvalTargets, Rates, TrueRates, their
names and shapes), bits per spike (`poisson.py`) and atomic writes (`atomic.py`). It imports
nothing else of the suite, and this file imports nothing at all, so that light users (the
command-line parser) load only what they name."""
