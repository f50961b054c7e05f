"""Pieces shared by the count models: multinomial terms and frequency tables."""

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


def frequency_table(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of non-negative integer data and how often each occurs.

    ``np.bincount`` is several times faster than sorting when the largest count is not
    much bigger than the sample; otherwise fall back to ``np.unique``.
    """
    top = int(y.max())
    if top <= 4 * y.size + 1024:
        freqs = np.bincount(y)
        values = np.flatnonzero(freqs)
        return values.astype(float), freqs[values].astype(float)
    values, freqs = np.unique(y, return_counts=True)
    return values.astype(float), freqs.astype(float)
