"""The negative binomial pieces shared by :mod:`emlib.zinb` and :mod:`emlib.nb_mixture`.

The negative binomial with mean μ and size θ (variance μ + μ²/θ) has

.. math::

    \\log f(y; \\mu, \\theta) = D(y, \\theta) + y \\log\\mu
        - (y + \\theta)\\log\\left(1 + \\frac{\\mu}{\\theta}\\right) - \\log y!,
    \\qquad D(y, \\theta) = \\log\\Gamma(y + \\theta) - \\log\\Gamma(\\theta) - y\\log\\theta.

As θ → ∞ the negative binomial tends to the Poisson: :math:`D \\to 0` and
:math:`(y + \\theta)\\log(1 + \\mu/\\theta) \\to \\mu`. Written as
``gammaln(y + θ) - gammaln(θ)``, :math:`D` is a difference of two numbers of size
θ log θ and loses every digit near θ ≈ 1e12; :func:`log_gamma_ratio` instead uses
Stirling's series for θ ≥ 100, where the leading terms combine into
:math:`\\theta(\\log(1+x) - x) + (y - \\tfrac12)\\log(1+x)` with x = y/θ, both computed
without cancellation. ``theta = inf`` is allowed everywhere and means the Poisson.

:func:`weighted_fit` is the M-step of both models: the maximum of
:math:`\\sum_i w_i \\log f(y_i; s_i\\mu, \\theta)` over (μ, θ) for many independent groups
(genes, or mixture components) at once, on ragged data (one entry per distinct value of a
group, with its weight), without a Python loop over groups.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln, xlogy

#: Largest finite θ the fit reports. Beyond it the score is below the rounding error of
#: the sums and the log-likelihood differs from its limit by less than about n/θ².
THETA_MAX = 1e10
#: Smallest θ the fit reports.
THETA_MIN = 1e-8
#: From this θ on, log Γ differences use Stirling's series instead of ``gammaln``.
_STIRLING_FROM = 100.0
#: Newton stops when a step in log θ (or log μ) is below this, relative: the score itself
#: is only known to about this precision once it is summed over many counts.
_ROOT_XTOL = 1e-10
#: Most alternations between the μ and θ maximisations when there are size factors (μ and
#: θ are nearly orthogonal, so a few usually suffice).
_MAX_CYCLES = 50
_LOG_THETA_MAX = float(np.log(THETA_MAX))
_LOG_THETA_MIN = float(np.log(THETA_MIN))


def log1pmx(x: np.ndarray) -> np.ndarray:
    """``log(1 + x) - x`` for ``x >= 0``, accurate also when x is tiny."""
    x = np.asarray(x, dtype=float)
    small = x < 0.1
    xs = np.where(small, x, 0.0)
    # -x²/2 + x³/3 - ... - x¹⁶/16: the next term is below 1e-16 relative for x < 0.1.
    series = np.zeros_like(xs)
    for j in range(16, 1, -1):
        series = xs * (series + (-1.0) ** (j + 1) / j)
    direct = np.log1p(np.where(small, 0.0, x)) - np.where(small, 0.0, x)
    return np.where(small, series * xs, direct)


def _stirling_tail(z: np.ndarray) -> np.ndarray:
    """log Γ(z) − [(z − ½) log z − z + ½ log 2π] for z ≥ 100 (error below 1e-21)."""
    inv = 1.0 / z
    inv2 = inv * inv
    return inv * (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 / 1680)))


def _by_branch(y, theta, direct, asymptotic) -> np.ndarray:
    """Apply ``direct`` where θ < 100, ``asymptotic`` where 100 ≤ θ < ∞, and 0 at θ = ∞."""
    y, theta = np.broadcast_arrays(np.asarray(y, float), np.asarray(theta, float))
    out = np.zeros(y.shape)
    small = theta < _STIRLING_FROM
    large = ~small & np.isfinite(theta)
    if small.all():
        return direct(y, theta)
    if small.any():
        out[small] = direct(y[small], theta[small])
    if large.any():
        out[large] = asymptotic(y[large], theta[large])
    return out


def _log_gamma_ratio_direct(y, t):
    return gammaln(y + t) - gammaln(t) - y * np.log(t)


def _log_gamma_ratio_stirling(y, t):
    x = y / t
    return t * log1pmx(x) + (y - 0.5) * np.log1p(x) + (_stirling_tail(t + y) - _stirling_tail(t))


def log_gamma_ratio(y, theta) -> np.ndarray:
    """:math:`D(y, θ) = \\log Γ(y+θ) − \\log Γ(θ) − y \\log θ`, exact as θ → ∞ (0 at θ = ∞)."""
    return _by_branch(y, theta, _log_gamma_ratio_direct, _log_gamma_ratio_stirling)


def _digamma_ratio_direct(y, t):
    return digamma(y + t) - digamma(t)


def _digamma_ratio_asymptotic(y, t):
    z = t + y
    # ψ(z) = log z − 1/(2z) − 1/(12z²) + 1/(120z⁴) − 1/(252z⁶) + ..., differenced termwise.
    return (
        np.log1p(y / t)
        + y / (2 * t * z)
        - (1 / z**2 - 1 / t**2) / 12
        + (1 / z**4 - 1 / t**4) / 120
        - (1 / z**6 - 1 / t**6) / 252
    )


def digamma_ratio(y, theta) -> np.ndarray:
    """:math:`ψ(y+θ) − ψ(θ)`, the θ-derivative of :math:`\\log Γ(y+θ) − \\log Γ(θ)`."""
    return _by_branch(y, theta, _digamma_ratio_direct, _digamma_ratio_asymptotic)


def _trigamma(x: np.ndarray) -> np.ndarray:
    """ψ'(x) for x > 0 to about 1e-10 relative: six steps of the recurrence, then the series.

    (``scipy.special.polygamma(1, x)`` goes through the Hurwitz zeta function and is tens
    of times slower; the Newton steps that use this only need a good derivative.)
    """
    total = np.zeros_like(x)
    for k in range(6):
        total += 1.0 / (x + k) ** 2
    z = x + 6.0
    inv = 1.0 / z
    inv2 = inv * inv
    series = inv * (
        1 + inv * (0.5 + inv * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42 - inv2 / 30))))
    )
    return total + series


def _trigamma_ratio_asymptotic(y, t):
    z = t + y
    # ψ'(z) = 1/z + 1/(2z²) + 1/(6z³) − 1/(30z⁵) + ...
    return (
        -y / (t * z)
        + (1 / z**2 - 1 / t**2) / 2
        + (1 / z**3 - 1 / t**3) / 6
        - (1 / z**5 - 1 / t**5) / 30
    )


def trigamma_ratio(y, theta) -> np.ndarray:
    """:math:`ψ'(y+θ) − ψ'(θ)`, to about 1e-10 relative (used only for Newton steps)."""
    return _by_branch(
        y, theta, lambda y, t: _trigamma(y + t) - _trigamma(t), _trigamma_ratio_asymptotic
    )


def _log1p_ratio_times(c, mu, theta) -> np.ndarray:
    """:math:`c \\log(1 + μ/θ)` with the θ → ∞ limit, ``(y + θ) log(1 + μ/θ) → μ``."""
    infinite = np.isinf(theta)
    t = np.where(infinite, 1.0, theta)
    return np.where(infinite, mu, c * np.log1p(mu / t))


def logpmf_unnormalised(y, mu, theta) -> np.ndarray:
    """:math:`\\log f(y; μ, θ) + \\log y!`: the log-pmf without its −log y! term.

    ``theta = inf`` gives the Poisson; ``mu = 0`` gives a point mass at zero.
    """
    y, mu, theta = np.broadcast_arrays(
        np.asarray(y, float), np.asarray(mu, float), np.asarray(theta, float)
    )
    with np.errstate(divide="ignore"):
        return (
            log_gamma_ratio(y, theta)
            + xlogy(y, mu)
            - _log1p_ratio_times(y + np.where(np.isinf(theta), 0.0, theta), mu, theta)
        )


def logpmf(y, mu, theta) -> np.ndarray:
    """Negative-binomial log-pmf (mean μ, size θ, variance μ + μ²/θ); θ = inf is the Poisson."""
    y = np.asarray(y, dtype=float)
    return logpmf_unnormalised(y, mu, theta) - gammaln(y + 1.0)


def log_zero_probability(mu, theta) -> np.ndarray:
    """:math:`\\log f(0; μ, θ) = −θ \\log(1 + μ/θ)`, which is −μ at θ = ∞."""
    mu, theta = np.broadcast_arrays(np.asarray(mu, float), np.asarray(theta, float))
    return -_log1p_ratio_times(theta, mu, theta)


def _group_sum(values, group, n_groups) -> np.ndarray:
    return np.bincount(group, weights=values, minlength=n_groups)


def _live_entries(live, group, y, w, *more):
    """``(y, w, group, *more)`` cut to the entries of the live groups (order kept)."""
    keep = live[group]
    if keep.all():
        return (y, w, group, *more)
    return (y[keep], w[keep], group[keep], *(a[keep] for a in more))


def _grouped_ratio(y, t, group, func, asymptotic) -> np.ndarray:
    """``func(y + θ_g) − func(θ_g)`` per entry, ``func(θ_g)`` computed once per group.

    As :func:`_by_branch`: the asymptotic difference where 100 ≤ θ_g < ∞, 0 at θ_g = ∞.
    """
    tg = t[group]
    small = tg < _STIRLING_FROM
    per_group = func(np.where(t < _STIRLING_FROM, t, 1.0))
    if small.all():
        return func(y + tg) - per_group[group]
    out = np.zeros(y.shape)
    large = ~small & np.isfinite(tg)
    if small.any():
        out[small] = func(y[small] + tg[small]) - per_group[group[small]]
    if large.any():
        out[large] = asymptotic(y[large], tg[large])
    return out


def _digamma_ratio_grouped(y, t, group) -> np.ndarray:
    """:func:`digamma_ratio` of ``(y, t[group])``, with ψ(θ) evaluated once per group."""
    return _grouped_ratio(y, t, group, digamma, _digamma_ratio_asymptotic)


def _trigamma_ratio_grouped(y, t, group) -> np.ndarray:
    """:func:`trigamma_ratio` of ``(y, t[group])``, with ψ'(θ) evaluated once per group."""
    return _grouped_ratio(y, t, group, _trigamma, _trigamma_ratio_asymptotic)


def log_scale_derivatives(theta, first, second):
    """Derivatives in :math:`x = \\log\\theta` from derivatives in θ (the chain rule).

    For :math:`g(x) = G(e^x)` with :math:`\\theta = e^x`,

    .. math:: \\frac{dg}{dx} = \\theta\\, G'(\\theta), \\qquad
              \\frac{d^2 g}{dx^2} = \\theta\\, G'(\\theta) + \\theta^2 G''(\\theta).

    The root finders work in log θ (θ spans many orders of magnitude and must stay
    positive); the scores are easiest to write in θ.

    Parameters
    ----------
    theta : ndarray
        θ > 0.
    first, second : ndarray
        :math:`G'(\\theta)` and :math:`G''(\\theta)`.

    Returns
    -------
    d1, d2 : ndarray
        :math:`dg/dx` and :math:`d^2g/dx^2` at :math:`x = \\log\\theta`.
    """
    d1 = theta * first
    return d1, d1 + theta * theta * second


def log_scale_root(
    func, x0, *, x_alt=None, active=None, lower=_LOG_THETA_MIN, upper=_LOG_THETA_MAX, max_steps=200
):
    """Roots of many functions of a log-scale variable at once, by safeguarded Newton.

    For every group j solve :math:`g_j(x) = 0`, where :math:`g_j` is positive left of its
    root and negative right of it (the derivative of a function with one maximum, such
    as the profile log-likelihood in :math:`x = \\log\\theta`). From :math:`x_0` each step is

    .. math:: x \\leftarrow x + \\operatorname{clip}\\bigl(-g_j(x) / g_j'(x), -2, 2\\bigr)

    (a factor at most :math:`e^2` in the original scale; where :math:`g_j' \\ge 0` or the
    step is not finite, a step of 2 in the direction of the sign of :math:`g_j`). Every
    point evaluated narrows the bracket :math:`[lo_j, hi_j]` (:math:`g_j > 0` at lo,
    :math:`< 0` at hi); once both ends are finite, a Newton step that leaves the bracket is
    replaced by bisection, so the iteration cannot cycle. A group stops when its step, or
    its bracket, is below ``1e-10`` × max(1, |x|) (:data:`_ROOT_XTOL`), or when
    :math:`g_j(x) = 0`.

    Parameters
    ----------
    func : callable
        ``func(x, live) -> (g, dg)``, the values and derivatives for every group at once.
        ``live`` (a boolean mask) marks the groups still iterating: only their entries need
        be computed, the others' are ignored, so a few slow roots do not cost a pass over
        every group's data.
    x0 : ndarray
        Starting points, one per group.
    x_alt : ndarray, optional
        A second start (e.g. a moment estimate beside the previous iterate): evaluated
        first, it narrows the bracket and replaces ``x0`` where it lies between ``x0`` and
        the root.
    active : ndarray of bool, optional
        Groups to solve; the others keep ``x0`` (clipped to the bounds).
    lower, upper : float
        Bounds on x: a root beyond them is clipped to the nearer end.
    max_steps : int
        Most Newton steps.

    Returns
    -------
    ndarray
        The roots, one per group.
    """
    x = np.clip(np.asarray(x0, dtype=float), lower, upper)
    lo = np.full_like(x, -np.inf)
    hi = np.full_like(x, np.inf)
    done = np.zeros(x.shape, dtype=bool) if active is None else ~np.asarray(active)
    if done.all():
        return x
    if x_alt is not None:
        xa = np.clip(np.asarray(x_alt, dtype=float), lower, upper)
        ga, _ = func(xa, ~done)
        lo = np.where(ga > 0, xa, lo)
        hi = np.where(ga < 0, xa, hi)
        x = np.where(~done & (((ga > 0) & (xa > x)) | ((ga < 0) & (xa < x))), xa, x)
    for _ in range(max_steps):
        g, dg = func(x, ~done)
        lo = np.where(g > 0, np.maximum(lo, x), lo)
        hi = np.where(g < 0, np.minimum(hi, x), hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = np.where(dg < 0, -g / dg, np.sign(g) * 2.0)
        newton = np.where(np.isfinite(newton), newton, np.sign(g) * 2.0)
        new = x + np.clip(newton, -2.0, 2.0)
        bracketed = np.isfinite(lo) & np.isfinite(hi)
        outside = (new <= lo) | (new >= hi)
        with np.errstate(invalid="ignore"):
            new = np.where(bracketed & outside, 0.5 * (lo + hi), new)
        new = np.clip(new, lower, upper)
        small = np.abs(new - x) <= _ROOT_XTOL * np.maximum(1.0, np.abs(x))
        x = np.where(done, x, new)
        done |= (
            small | (g == 0) | (bracketed & (hi - lo <= _ROOT_XTOL * np.maximum(1.0, np.abs(x))))
        )
        if done.all():
            break
    return x


def weighted_fit(y, w, group, n_groups, *, s=None, theta_start=None, mu_start=None, cycles=None):
    """Maximise :math:`\\sum_i w_i \\log f(y_i; s_i μ_g, θ_g)` over (μ_g, θ_g) for every group g.

    Parameters
    ----------
    y, w : ndarray of shape (m,)
        Values and their non-negative weights (responsibility times multiplicity).
    group : ndarray of int, shape (m,)
        Group (gene, component) of each entry.
    n_groups : int
    s : ndarray of shape (m,), optional
        Size factor of each entry (mean s μ); ``None`` means 1.
    theta_start, mu_start : ndarray of shape (n_groups,), optional
        Warm starts (the previous EM iterate).
    cycles : int, optional
        With size factors, the most (μ, θ) conditional-maximisation cycles; default: until
        the parameters stop changing. Inside EM one cycle from the previous iterate is
        enough (an ECM step, Meng & Rubin 1993): it cannot lower the weighted likelihood,
        so EM stays monotone, and it has the same fixed points.

    Returns
    -------
    mu, theta : ndarray of shape (n_groups,)
        θ is ``inf`` where the weighted data are not overdispersed, which is where the
        likelihood increases all the way to the Poisson limit.

    Notes
    -----
    Without size factors the score in μ vanishes at the weighted mean for every θ, so
    :math:`\\hat μ = \\sum w y / \\sum w` and θ maximises the profile likelihood, whose
    derivative

    .. math:: \\sum_i w_i [ψ(y_i + θ) − ψ(θ)] − W \\log(1 + \\hat μ/θ), \\qquad W = \\sum_i w_i,

    has exactly one root when the weighted variance exceeds the weighted mean
    (:math:`\\sum w y(y-1) > W \\hat μ^2`) and none otherwise (Levin & Reeds 1977), in
    which case θ̂ = ∞. The root is found in log θ by safeguarded Newton for all groups
    at once. With size factors there is no closed form for μ; the fit alternates exact
    conditional maximisations over log μ (concave) and log θ until the parameters stop
    changing, and keeps the starting values of a group if they were better.
    """
    y = np.asarray(y, dtype=float)
    w = np.asarray(w, dtype=float)
    total_w = np.maximum(_group_sum(w, group, n_groups), np.finfo(float).tiny)
    if s is None:
        mu = _group_sum(w * y, group, n_groups) / total_w
        theta = _profile_theta(y, w, group, n_groups, mu, total_w, theta_start)
        return mu, theta
    return _fit_with_size_factors(
        y, w, group, n_groups, s, total_w, theta_start, mu_start, cycles or _MAX_CYCLES
    )


def _start_theta(theta_start, moment):
    if theta_start is None:
        return moment
    theta_start = np.asarray(theta_start, dtype=float)
    return np.where(np.isfinite(theta_start), theta_start, moment)


def _profile_theta(y, w, group, n_groups, mu, total_w, theta_start):
    excess = _group_sum(w * y * (y - 1.0), group, n_groups) - total_w * mu**2
    over = excess > 0
    theta = np.full(n_groups, np.inf)
    if not over.any():
        return theta
    # Groups that are not overdispersed (excess <= 0, possibly 0/0) keep θ = ∞ below.
    with np.errstate(divide="ignore", invalid="ignore"):
        moment = np.clip(total_w * mu**2 / excess, THETA_MIN, THETA_MAX)
    x0 = np.log(_start_theta(theta_start, moment))
    x_alt = np.log(moment)
    positive = y > 0  # zeros add nothing to Σ w [ψ(y+θ) − ψ(θ)]
    yp, wp, gp = y[positive], w[positive], group[positive]

    def score(x, live):
        t = np.exp(x)
        ys, ws, gs = _live_entries(live, gp, yp, wp)
        g1 = _group_sum(ws * _digamma_ratio_grouped(ys, t, gs), gs, n_groups)
        g1 = g1 - total_w * np.log1p(mu / t)
        h1 = _group_sum(ws * _trigamma_ratio_grouped(ys, t, gs), gs, n_groups)
        h1 = h1 + total_w * mu / (t * (t + mu))
        return log_scale_derivatives(t, g1, h1)

    root = log_scale_root(
        score, np.where(over, x0, 0.0), x_alt=np.where(over, x_alt, 0.0), active=over
    )
    theta[over] = np.exp(root[over])
    return theta


def weighted_nb_loglik(y, w, group, n_groups, mu, theta, s=None) -> np.ndarray:
    """:math:`\\sum_i w_i \\log f(y_i; s_i μ_g, θ_g) + \\log y_i!` per group."""
    scale = 1.0 if s is None else s
    values = logpmf_unnormalised(y, scale * mu[group], theta[group])
    with np.errstate(invalid="ignore"):
        values = np.where(w > 0, w * values, 0.0)
    return _group_sum(values, group, n_groups)


def _fit_with_size_factors(y, w, group, n_groups, s, total_w, theta_start, mu_start, cycles):
    s = np.asarray(s, dtype=float)
    sum_wy = _group_sum(w * y, group, n_groups)
    poisson_mu = sum_wy / np.maximum(_group_sum(w * s, group, n_groups), np.finfo(float).tiny)
    if mu_start is None:
        mu = poisson_mu.copy()
    else:
        mu = np.asarray(mu_start, dtype=float).copy()
    if theta_start is None:
        theta = np.full(n_groups, 10.0)
    else:
        theta = np.asarray(theta_start, dtype=float).copy()
    start_mu, start_theta = mu.copy(), theta.copy()
    start_q = weighted_nb_loglik(y, w, group, n_groups, mu, theta, s)
    for _ in range(cycles):
        old_mu, old_theta = mu, theta
        mu = _conditional_mu(y, w, group, n_groups, s, theta, mu, poisson_mu)
        theta = _conditional_theta(y, w, group, n_groups, s, mu, theta)
        change = np.maximum(
            np.abs(np.log(mu / old_mu)),
            np.where(
                np.isinf(theta) & np.isinf(old_theta),
                0.0,
                np.abs(1 / theta - 1 / old_theta) * np.minimum(theta, 1e300),
            ),
        )
        if np.all(np.nan_to_num(change, nan=np.inf) <= 10 * _ROOT_XTOL):
            break
    q = weighted_nb_loglik(y, w, group, n_groups, mu, theta, s)
    worse = q < start_q
    mu = np.where(worse, start_mu, mu)
    theta = np.where(worse, start_theta, theta)
    return mu, theta


def _conditional_mu(y, w, group, n_groups, s, theta, mu, poisson_mu):
    """The μ maximising the weighted likelihood for fixed θ: a root in log μ (concave)."""
    finite = np.isfinite(theta)
    tg = np.where(finite, theta, 1.0)[group]
    fin = finite[group]

    def score(x, live):  # cheap per entry: computed for every group
        m = np.exp(x)[group] * s
        frac = m / (tg + m)
        g_entries = np.where(fin, y - (y + tg) * frac, y - m)
        d_entries = np.where(fin, -(y + tg) * frac * tg / (tg + m), -m)
        return _group_sum(w * g_entries, group, n_groups), _group_sum(
            w * d_entries, group, n_groups
        )

    x0 = np.log(np.where(np.isfinite(mu) & (mu > 0), mu, poisson_mu))
    root = log_scale_root(score, x0, lower=-700.0, upper=700.0)
    return np.where(finite, np.exp(root), poisson_mu)


def _conditional_theta(y, w, group, n_groups, s, mu, theta):
    """The θ maximising the weighted likelihood for fixed μ; ∞ if not overdispersed."""
    m = s * mu[group]
    excess = _group_sum(w * ((y - m) ** 2 - y), group, n_groups)
    over = excess > 0
    out = np.full(n_groups, np.inf)
    if not over.any():
        return out
    total_w = _group_sum(w, group, n_groups)
    scale = _group_sum(w * m, group, n_groups) / np.maximum(total_w, np.finfo(float).tiny)
    with np.errstate(divide="ignore"):
        moment = np.clip(total_w * scale**2 / excess, THETA_MIN, THETA_MAX)
    x0 = np.log(_start_theta(theta, moment))
    x_alt = np.log(moment)

    def score(x, live):
        t = np.exp(x)
        ys, ws, gs, ms = _live_entries(live, group, y, w, m)
        tg = t[gs]
        g_entries = _digamma_ratio_grouped(ys, t, gs) - np.log1p(ms / tg) + (ms - ys) / (tg + ms)
        h_entries = (
            _trigamma_ratio_grouped(ys, t, gs) + ms / (tg * (tg + ms)) - (ms - ys) / (tg + ms) ** 2
        )
        g1 = _group_sum(ws * g_entries, gs, n_groups)
        h1 = _group_sum(ws * h_entries, gs, n_groups)
        return log_scale_derivatives(t, g1, h1)

    root = log_scale_root(
        score, np.where(over, x0, 0.0), x_alt=np.where(over, x_alt, 0.0), active=over
    )
    out[over] = np.exp(root[over])
    return out
