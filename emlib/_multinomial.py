"""Pieces shared by the models whose data are a fixed set of category counts."""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, xlogy


def log_coefficient(counts: np.ndarray) -> float:
    """Log of the multinomial coefficient ``n! / prod(x_j!)``."""
    return float(gammaln(counts.sum() + 1) - gammaln(counts + 1).sum())


def loglik(counts: np.ndarray, probs: np.ndarray, coefficient: float) -> float:
    """Full multinomial log-likelihood; a zero probability with a zero count contributes 0."""
    with np.errstate(divide="ignore"):
        return float(coefficient + xlogy(counts, probs).sum())
