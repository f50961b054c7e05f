"""emlib.hmm vs hmmlearn (PoissonHMM, GaussianHMM) per Baum–Welch iteration, T = 10^6, K = 3.

Both libraries start from the same parameters and run the same fixed number of plain EM
iterations (emlib with ``accelerate=None, tol=0``, hmmlearn with ``tol=-inf``), so they
must reach the same parameters and log-likelihood; the goal is emlib at least as fast
per iteration (ratio hmmlearn / emlib >= 1). hmmlearn runs its faster ``"scaling"``
forward–backward (compiled C++); its default ``"log"`` implementation is timed once too
(informational). A second line per case leaves out each fit's fixed costs by timing
one-iteration fits ((t_N - t_1) / (N - 1)): emlib's include the data checks, the
first E-step's page faults on its work arrays, and one E-step more than iterations (the
driver evaluates ℓ at the start and at the end; hmmlearn's N iterations run N E-steps).

Run: ``.venv/bin/python benchmarks/bench_hmm.py`` (or ``make bench``).
"""

from __future__ import annotations

import warnings

import numpy as np
from _common import best_of, check, finish, result, timed
from hmmlearn.hmm import GaussianHMM, PoissonHMM

from emlib import ConvergenceWarning, hmm

SEED = 20261202
REPEATS = 2
N_ITER = 4
T = 1_000_000
GOAL = 1.0
#: The two fits' log-likelihoods may differ by this much, relative (rounding).
LOGLIK_RTOL = 1e-9
TRANSMAT = np.array([[0.95, 0.03, 0.02], [0.04, 0.92, 0.04], [0.02, 0.03, 0.95]])
TRUTH = {
    "poisson": {"rates": np.array([1.0, 5.0, 12.0])},
    "gaussian": {"means": np.array([-2.0, 0.0, 3.0]), "variances": np.array([0.5, 1.0, 2.0])},
}
STARTS = {
    "poisson": {"rates": np.array([2.0, 4.0, 8.0])},
    "gaussian": {"means": np.array([-1.0, 0.5, 2.0]), "variances": np.array([1.0, 1.0, 1.0])},
}


def states(rng: np.random.Generator) -> np.ndarray:
    """A chain with TRANSMAT: geometric sojourns, then a jump off the diagonal."""
    k = TRANSMAT.shape[0]
    out, state, t = np.empty(T, dtype=int), 0, 0
    while t < T:
        stay = int(rng.geometric(1 - TRANSMAT[state, state]))
        out[t : t + stay] = state
        t += stay
        jump = TRANSMAT[state].copy()
        jump[state] = 0
        state = int(rng.choice(k, p=jump / jump.sum()))
    return out


def make_case(emission: str):
    rng = np.random.default_rng(SEED)
    z = states(rng)
    truth = TRUTH[emission]
    if emission == "poisson":
        y = rng.poisson(truth["rates"][z])
    else:
        y = rng.normal(truth["means"][z], np.sqrt(truth["variances"][z]))
    init = {
        "startprob": np.full(3, 1 / 3),
        "transmat": np.full((3, 3), 0.1) + 0.7 * np.eye(3),
        **STARTS[emission],
    }
    return y, init


def fit_emlib(y, init, emission, n_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return hmm.fit(y, 3, emission=emission, init=init, tol=0, max_iter=n_iter, accelerate=None)


def fit_hmmlearn(y, init, emission, n_iter, implementation="scaling"):
    if emission == "poisson":
        model = PoissonHMM(3, n_iter=n_iter, tol=-np.inf, init_params="", params="stl")
        model.lambdas_ = init["rates"][:, None]
    else:
        model = GaussianHMM(
            3, "diag", n_iter=n_iter, tol=-np.inf, init_params="", params="stmc", covars_prior=0.0
        )
        model.means_, model.covars_ = init["means"][:, None], init["variances"][:, None]
    model.implementation = implementation
    model.startprob_, model.transmat_ = init["startprob"], init["transmat"]
    return model.fit(y[:, None])


def compare(y, init, emission) -> tuple[float, bool]:
    em_best = hl_best = em_1 = hl_1 = float("inf")
    for _ in range(REPEATS):
        # Interleaved, so that both see the same machine conditions.
        t_em, em = timed(lambda: fit_emlib(y, init, emission, N_ITER))
        t_hl, hl = timed(lambda: fit_hmmlearn(y, init, emission, N_ITER))
        em_best, hl_best = min(em_best, t_em / em.n_iter), min(hl_best, t_hl / hl.monitor_.iter)
        em_1 = min(em_1, timed(lambda: fit_emlib(y, init, emission, 1))[0])
        hl_1 = min(hl_1, timed(lambda: fit_hmmlearn(y, init, emission, 1))[0])
    t_log, _ = timed(lambda: fit_hmmlearn(y, init, emission, N_ITER, "log"))
    hl_ll = float(hl.score(y[:, None]))
    diff = em.loglik - hl_ll
    ll_ok = abs(diff) <= LOGLIK_RTOL * abs(hl_ll)
    if emission == "poisson":
        key, theirs = hl.lambdas_.ravel(), {"rates": hl.lambdas_.ravel()}
    else:
        key = hl.means_.ravel()
        theirs = {"means": key, "variances": hl.covars_.reshape(3, -1)[:, 0]}
    order = np.argsort(key)
    theirs = {name: value[order] for name, value in theirs.items()}
    theirs["startprob"] = hl.startprob_[order]
    theirs["transmat"] = hl.transmat_[np.ix_(order, order)]
    gap = max(np.abs(em.params[name] - theirs[name]).max() for name in theirs)
    em_iter = (em_best * N_ITER - em_1) / (N_ITER - 1)
    hl_iter = (hl_best * N_ITER - hl_1) / (N_ITER - 1)
    print(
        f"  emlib {em_best * 1e3:8.1f} ms/iter, hmmlearn (scaling) {hl_best * 1e3:8.1f} ms/iter, "
        f"hmmlearn (log) {t_log / N_ITER * 1e3:8.1f} ms/iter; loglik emlib {em.loglik:.6f}, "
        f"emlib - hmmlearn {diff:+.2e}; largest parameter difference {gap:.1e}"
    )
    print(
        f"  set-up excluded ((t_{N_ITER} - t_1) / {N_ITER - 1}): emlib {em_iter * 1e3:.1f} "
        f"ms/iter, hmmlearn {hl_iter * 1e3:.1f} ms/iter, ratio {hl_iter / em_iter:.2f}x "
        "(informational)"
    )
    check(em.n_iter == N_ITER and hl.monitor_.iter == N_ITER, f"both must run {N_ITER} iterations")
    check(ll_ok, f"the log-likelihoods differ by {diff:.3e}")
    check(gap < 1e-7, f"the two fits' parameters differ by {gap:.1e}")
    return hl_best / em_best, ll_ok


def split(y, init, emission) -> None:
    d = hmm._prepare(y, emission)
    params = hmm._check_params(init, emission)
    t_e, (stats, _) = best_of(REPEATS, lambda: hmm._e_step(d, params))
    t_m, _ = best_of(REPEATS, lambda: hmm._m_step(d, stats))
    t_v, _ = timed(lambda: hmm._viterbi(d, params))
    print(
        f"  emlib parts: E-step (forward-backward) {t_e * 1e3:.1f} ms, M-step "
        f"{t_m * 1e3:.2f} ms; Viterbi {t_v * 1e3:.1f} ms"
    )


def main() -> None:
    print(
        f"T = {T:,}, K = 3, same start, {N_ITER} plain Baum-Welch iterations each (emlib "
        f"accelerate=None tol=0, hmmlearn tol=-inf); best of {REPEATS}; seed {SEED}"
    )
    for emission in ("poisson", "gaussian"):
        y, init = make_case(emission)
        print(f"-- {emission} emissions")
        ratio, ll_ok = compare(y, init, emission)
        split(y, init, emission)
        result(
            f"hmm {emission} T=1e6 K=3 per-iteration speed vs hmmlearn",
            ratio,
            GOAL,
            extra=ll_ok,
        )
    finish()


if __name__ == "__main__":
    main()
