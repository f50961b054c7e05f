"""Issue 15's table: what the default ``fit`` returns on four slow cases, against the maximum.

Each row calls ``fit`` with the data (and ``k``) only, times it (best of a few calls), and
compares the result with a tight SQUAREM fit from the same start run until its steps are at
rounding level (``tol=0, xtol=1e-13``; for the matrix ``xtol=1e-12`` and without the Newton
polish of slow genes, so the reference does not share the default's method). Reported: wall
time, EM-map evaluations (of the winning start, and over all starts), ``converged``, the
largest parameter error relative to ``max(1, |θ|)`` and the log-likelihood gap relative to
``max(1, |ℓ|)``.

Goals (correctness): every default fit within 1e-6 in every parameter and 1e-9 in ℓ of the
maximum; ``converged`` True for all of them (per gene for the matrix).

1. ``poisson_mixture.fit(hasselblad, k=2)`` (EM rate about 0.996);
2. ``zinb.fit(Y)`` on the 5,000 cells × 2,000 genes matrix of ``bench_zinb.py``;
3. ``zinb.fit(y)`` on a bioChemists-like count vector (915 PhD students' article counts:
   negative binomial with mean 1.69 and θ = 2.3, no zero inflation, so π̂ = 0);
4. ``normal_mixture.fit(x, k=3)`` on 1,000 draws of 0.3 N(0,1) + 0.4 N(4.4,1) + 0.3 N(8.8,1)
   (EM rate 0.80).

Run: ``.venv/bin/python benchmarks/bench_defaults.py``.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from _common import best_of, check, finish, goal_line

import emlib
from emlib import normal_mixture, poisson_mixture, zinb

PARAM_TOL = 1e-6
LOGLIK_TOL = 1e-9


def bench_zinb_matrix() -> np.ndarray:
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from bench_zinb import make_data

    return make_data()


def biochemists_like() -> np.ndarray:
    rng = np.random.default_rng(1972)
    mu, theta = 1.69, 2.3
    return rng.negative_binomial(theta, theta / (theta + mu), 915)


def normal_mixture_rate_08() -> np.ndarray:
    rng = np.random.default_rng(7)
    z = rng.choice(3, 1000, p=[0.3, 0.4, 0.3])
    return rng.normal(np.array([0.0, 4.4, 8.8])[z], 1.0)


def flat(params) -> np.ndarray:
    out = []
    for key in sorted(params):
        value = np.atleast_1d(np.asarray(params[key], dtype=float))
        if key == "theta":  # compare 1/θ: θ = ∞ is a valid estimate
            value = 1.0 / value
        out.append(value)
    return np.concatenate(out)


def errors(fit, ref, per_gene: bool = False):
    if per_gene:
        a = np.column_stack([fit.params["mu"], 1 / fit.params["theta"], fit.params["pi"]])
        b = np.column_stack([ref.params["mu"], 1 / ref.params["theta"], ref.params["pi"]])
        perr = np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)), axis=1)
        lgap = (ref.loglik - fit.loglik) / np.maximum(1.0, np.abs(ref.loglik))
        return perr, lgap
    a, b = flat(fit.params), flat(ref.params)
    perr = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))
    lgap = float((ref.loglik - fit.loglik) / max(1.0, abs(ref.loglik)))
    return perr, lgap


def squarem_only(counts):
    """The matrix reference: SQUAREM alone to rounding level, without the Newton polish.

    The default fit polishes slow genes with Newton (``zinb.POLISH_AFTER``); the reference
    switches that off, so that it checks the polish instead of repeating it.
    """
    saved = zinb.POLISH_AFTER
    zinb.POLISH_AFTER = 10**9
    try:
        return zinb.fit(counts, accelerate="squarem", tol=0, xtol=1e-12, max_iter=100_000)
    finally:
        zinb.POLISH_AFTER = saved


def row(name, default_call, reference_call, repeats, per_gene=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, fit = best_of(repeats, default_call)
        ref = reference_call(fit)
    perr, lgap = errors(fit, ref, per_gene)
    total = getattr(fit, "n_iter_total", fit.n_iter)
    if per_gene:
        bad = (perr > PARAM_TOL) | (lgap > LOGLIK_TOL)
        print(
            f"{name}: {seconds:.3f} s, EM-map evaluations per gene median "
            f"{np.median(fit.n_iter):.0f} max {np.max(fit.n_iter)}, converged "
            f"{int(np.sum(fit.converged))}/{fit.converged.size}; genes off the maximum "
            f"(>1e-6 param or >1e-9 ℓ): {int(bad.sum())}; worst param error {perr.max():.1e}, "
            f"worst ℓ gap {lgap.max():.1e} (absolute {np.max(ref.loglik - fit.loglik):.2e})"
        )
        ok = not bad.any() and bool(np.all(fit.converged))
    else:
        print(
            f"{name}: {seconds * 1e3:.2f} ms, {fit.n_iter} EM-map evaluations ({total} over all "
            f"starts), converged={fit.converged}; param error {perr:.1e}, ℓ gap {lgap:.1e}"
        )
        ok = perr <= PARAM_TOL and lgap <= LOGLIK_TOL and bool(fit.converged)
    check(ok, f"{name}: the default fit is not at the maximum (or says it has not converged)")
    goal_line(name, "at the maximum" if ok else "short of it", "at the maximum, converged", ok)
    return fit


def main() -> None:
    print(f"emlib {emlib.__file__}")
    y = poisson_mixture.hasselblad_data()
    row(
        "poisson_mixture.fit(hasselblad, k=2)",
        lambda: poisson_mixture.fit(y, k=2),
        lambda fit: poisson_mixture.fit(
            y, k=2, accelerate="squarem", tol=0, xtol=1e-13, max_iter=100_000
        ),
        10,
    )
    y = biochemists_like()
    row(
        "zinb.fit(bioChemists-like y)",
        lambda: zinb.fit(y),
        lambda fit: zinb.fit(y, accelerate="squarem", tol=0, xtol=1e-13, max_iter=100_000),
        10,
    )
    x = normal_mixture_rate_08()
    row(
        "normal_mixture.fit(x, k=3), rate 0.8",
        lambda: normal_mixture.fit(x, k=3),
        lambda fit: normal_mixture.fit(
            x,
            k=3,
            init={key: np.asarray(v) for key, v in fit.params.items()},
            accelerate="squarem",
            tol=0,
            xtol=1e-13,
            max_iter=100_000,
        ),
        3,
    )
    counts = bench_zinb_matrix()
    row(
        "zinb.fit(Y), 5,000 x 2,000",
        lambda: zinb.fit(counts),
        lambda fit: squarem_only(counts),
        1,
        per_gene=True,
    )
    finish()


if __name__ == "__main__":
    main()
