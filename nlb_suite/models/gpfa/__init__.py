"""GPFA (Yu et al. 2009): the estimator (`estimator.py`) reads first; its EM is in `em.py`, the
linear algebra that makes the EM fast in `linalg.py`, and the plain dense version the tests
compare every trick with in `dense.py`."""

from .estimator import Gpfa, GpfaConfig

__all__ = ["Gpfa", "GpfaConfig"]
