"""Statistical checks that a tensor was drawn from a stated distribution, with a stated false-failure rate.

Every check rejects a correct draw with probability at most ``ALPHA``, whatever the seed, and a run makes
fewer than 1,000 of them (about 3 per parameter of every model), so a correct suite fails spuriously less
than once in a million runs. The bounds are exact, not asymptotic:

* Kolmogorov-Smirnov by the Dvoretzky-Kiefer-Wolfowitz inequality (Massart's constant):
  P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2), so eps = sqrt(ln(2 / ALPHA) / (2 n)).
* The support of a uniform draw: every |u| <= 1 exactly, and P(max |u| < 1 - delta) = (1 - delta)^n, so
  delta = 1 - ALPHA^(1/n). A bound too wide fails the first, one too narrow by more than delta the second.

Power, for the sizes checked (tests/test_distributions.py plants each at several seeds): with n >= 300 (small
parameters pool several builds), a uniform bound 7 % too wide or too narrow; with n >= 17,424 (one tower's
conv1 weight, the smallest normal draw), a standard deviation 20 % off (5 % from n = 200,000).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from reference.verify.inits import Constant, Init, Normal, Uniform

__all__ = ["ALPHA", "MAX_SAMPLES", "check_drawn_from"]

ALPHA = 1e-9
MAX_SAMPLES = 200_000  # a strided subset of an iid draw is an iid draw: fc6's 38M weights need not be sorted


def _ks_statistic(sorted_cdf: Tensor) -> float:
    n = sorted_cdf.numel()
    steps = torch.arange(1, n + 1, dtype=torch.float64) / n
    return max((steps - sorted_cdf).max().item(), (sorted_cdf - (steps - 1.0 / n)).max().item())


def _ks_bound(n: int) -> float:
    return math.sqrt(math.log(2.0 / ALPHA) / (2 * n))


def check_drawn_from(values: Tensor, init: Init, what: str) -> None:
    """Raise AssertionError unless ``values`` (one parameter, or several builds' stacked) passes every check of
    ``init``'s family: a constant exactly; a normal by KS on the standardised values; a uniform by its support
    and by KS on the values divided by their per-element bound."""
    values = values.detach()
    if isinstance(init, Constant):
        assert torch.equal(values, torch.full_like(values, init.value)), f"{what}: not the constant {init.value}"
        return
    if isinstance(init, Normal):
        standard = (_subsample(values) - init.mean) / init.std
        cdf = torch.special.ndtr(standard.sort().values)
    elif isinstance(init, Uniform):
        bound = torch.as_tensor(init.bound, dtype=torch.float64)
        if bound.numel() == 1:  # the extremes alone: no copy of fc6's 38M weights
            low, high = torch.aminmax(values)
            top = max(-low.item(), high.item()) / bound.item()
        else:
            top = (values.to(torch.float64) / bound).abs().max().item()
        assert top <= 1.0, f"{what}: drawn beyond the bound (max |w| / bound = {top:.4g})"
        delta = 1.0 - ALPHA ** (1.0 / values.numel())
        assert top >= 1.0 - delta, f"{what}: max |w| / bound = {top:.4g} < {1 - delta:.4g}: drawn narrower than stated"
        if bound.numel() == 1:
            unit = _subsample(values) / bound  # subsampled first: no temporary the size of fc6
        else:
            unit = _subsample(values / bound.to(values.dtype).expand_as(values))
        cdf = (unit.sort().values + 1.0) / 2.0
    else:
        raise TypeError(f"{what}: no check for {init!r}")
    statistic, bound = _ks_statistic(cdf), _ks_bound(cdf.numel())
    assert statistic <= bound, f"{what}: KS statistic {statistic:.4g} > {bound:.4g} (n = {cdf.numel()}) for {init}"


def _subsample(values: Tensor) -> Tensor:
    """At most MAX_SAMPLES of the values, every k-th, in float64."""
    flat = values.flatten()
    return flat[:: max(1, math.ceil(flat.numel() / MAX_SAMPLES))].to(torch.float64)
