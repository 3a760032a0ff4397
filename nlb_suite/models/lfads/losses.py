"""The Poisson reconstruction cost."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def poisson_nll(log_rates: Tensor, counts: Tensor) -> Tensor:
    """Elementwise Poisson negative log-likelihood of `counts` given log rates (spikes/bin),
    exp(log_rates) - counts * log_rates: the log(n!) term does not depend on the model and is
    left out, as in lfads-torch. One fused op, which keeps no intermediate for the backward pass."""
    return F.poisson_nll_loss(log_rates, counts, log_input=True, full=False, reduction="none")
