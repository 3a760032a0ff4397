"""Trial windows to NLB tensors: model inputs (`Tensors`), evaluation targets (`EvalTargets`),
and, for synthetic data, the true rates (`TrueRates`). Every array is (trials, bins, units) in
trials-table order, binned on the session's global grid exactly as nlb_tools 0.0.4 bins it."""

from .build import TensorError, make_targets, make_tensors, make_true_rates, read_dataset_file

__all__ = ["TensorError", "make_targets", "make_tensors", "make_true_rates", "read_dataset_file"]
