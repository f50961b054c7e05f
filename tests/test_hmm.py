"""Hidden Markov models (emlib.hmm) against independent oracles.

The oracles: a brute-force sum (and argmax) over all K^T hidden paths on tiny cases, with
densities from scipy.stats; a plain sequential scaled forward–backward and Viterbi
written here (one time step per loop iteration) for longer series; hmmlearn's
PoissonHMM and GaussianHMM (an independent compiled implementation) run from the same
start to a tight tolerance; and the closed form se(λ̂) = sqrt(λ̂ / T) of a one-state model.
"""

import itertools
import warnings

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM, PoissonHMM
from scipy import stats

from emlib import hmm

A3 = np.array([[0.90, 0.06, 0.04], [0.05, 0.85, 0.10], [0.08, 0.07, 0.85]])
PI3 = np.array([0.5, 0.3, 0.2])
POISSON = {"startprob": PI3, "transmat": A3, "rates": np.array([1.0, 4.0, 10.0])}
GAUSS = {
    "startprob": PI3,
    "transmat": A3,
    "means": np.array([-2.0, 0.0, 3.0]),
    "variances": np.array([0.5, 1.0, 2.0]),
}


def simulate(params, T, seed, lengths=None):
    rng = np.random.default_rng(seed)
    A, pi = params["transmat"], params["startprob"]
    k = pi.size
    starts = set(np.cumsum([0, *lengths[:-1]]).tolist()) if lengths else {0}
    z = np.empty(T, dtype=int)
    for t in range(T):
        z[t] = rng.choice(k, p=pi if t in starts else A[z[t - 1]])
    if "rates" in params:
        return rng.poisson(params["rates"][z]), z
    return rng.normal(params["means"][z], np.sqrt(params["variances"][z])), z


def densities(y, params):
    y = np.asarray(y, dtype=float)[:, None]
    if "rates" in params:
        return stats.poisson.pmf(y, params["rates"][None])
    return stats.norm.pdf(y, params["means"][None], np.sqrt(params["variances"])[None])


def brute_force(sequences, params):
    """ℓ, posteriors and the best path by enumerating every hidden path."""
    A, pi = params["transmat"], params["startprob"]
    k = pi.size
    total, posts, best, best_log = 0.0, [], [], 0.0
    for y in sequences:
        f = densities(y, params)
        T = len(y)
        post = np.zeros((T, k))
        evidence, top, arg = 0.0, -1.0, None
        for z in itertools.product(range(k), repeat=T):
            w = (
                pi[z[0]]
                * f[0, z[0]]
                * np.prod([A[z[t - 1], z[t]] * f[t, z[t]] for t in range(1, T)])
            )
            evidence += w
            post[np.arange(T), z] += w
            if w > top:
                top, arg = w, z
        total += np.log(evidence)
        posts.append(post / evidence)
        best += list(arg)
        best_log += np.log(top)
    return total, np.vstack(posts), np.array(best), best_log


def sequential(y, params):
    """Textbook scaled forward–backward, one step at a time: ℓ, γ (T, K), Σ ξ (K, K)."""
    A, pi = params["transmat"], params["startprob"]
    f = densities(y, params)
    T, k = f.shape
    alpha, c = np.empty((T, k)), np.empty(T)
    a = pi * f[0]
    for t in range(T):
        if t:
            a = (alpha[t - 1] @ A) * f[t]
        c[t] = a.sum()
        alpha[t] = a / c[t]
    beta = np.ones((T, k))
    for t in range(T - 2, -1, -1):
        beta[t] = A @ (f[t + 1] * beta[t + 1]) / c[t + 1]
    gamma = alpha * beta
    xi = np.zeros((k, k))
    for t in range(1, T):
        xi += np.outer(alpha[t - 1], f[t] * beta[t]) * A / c[t]
    return float(np.log(c).sum()), gamma, xi


def sequential_viterbi(y, params):
    with np.errstate(divide="ignore"):
        log_a, log_f = np.log(params["transmat"]), np.log(densities(y, params))
        delta = np.log(params["startprob"]) + log_f[0]
    back = []
    for t in range(1, len(y)):
        cand = delta[:, None] + log_a
        back.append(cand.argmax(axis=0))
        delta = cand.max(axis=0) + log_f[t]
    path = [int(delta.argmax())]
    for pointer in reversed(back):
        path.append(int(pointer[path[-1]]))
    return np.array(path[::-1]), float(delta.max())


# --------------------------------------------------------------------------------------
# The E-step and decoding against brute force and the sequential recursions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [POISSON, GAUSS], ids=["poisson", "gaussian"])
def test_tiny_cases_against_every_hidden_path(params):
    sequences = [simulate(params, n, seed)[0] for n, seed in ((6, 1), (1, 2), (5, 3))]
    ll, post, best, best_log = brute_force(sequences, params)
    assert hmm.loglik(sequences, params) == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(hmm.posterior(sequences, params), post, atol=1e-12)
    path, log_prob = hmm.viterbi(sequences, params)
    np.testing.assert_array_equal(path, best)
    assert log_prob == pytest.approx(best_log, rel=1e-12)
    # The same sequences given as one array and their lengths.
    flat, lengths = np.concatenate(sequences), [len(s) for s in sequences]
    assert hmm.loglik(flat, params, lengths=lengths) == pytest.approx(ll, rel=1e-12)


@pytest.mark.parametrize("T", [1, 2, 7, 50, 1237])
def test_blocked_scans_match_the_sequential_recursions(T):
    y, _ = simulate(GAUSS, T, seed=T)
    ll, gamma, xi = sequential(y, GAUSS)
    assert hmm.loglik(y, GAUSS) == pytest.approx(ll, rel=1e-11)
    expected = hmm.e_step(y, GAUSS)
    np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
    np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)
    path, log_prob = hmm.viterbi(y, GAUSS)
    ref_path, ref_log = sequential_viterbi(y, GAUSS)
    np.testing.assert_array_equal(path, ref_path)
    assert log_prob == pytest.approx(ref_log, rel=1e-11)


def test_extreme_emissions_do_not_underflow():
    # Counts far in the tails: each density alone is below 1e-300 for some states.
    params = {**POISSON, "rates": np.array([0.5, 50.0, 400.0])}
    y, _ = simulate(params, 400, seed=5)
    _, gamma, _ = sequential(y, params)
    assert np.isfinite(hmm.loglik(y, params))
    np.testing.assert_allclose(hmm.posterior(y, params), gamma, atol=1e-10)


def sequential_many(sequences, params):
    """The sequential oracle run on each sequence: ℓ summed, γ stacked, Σ ξ summed."""
    parts = [sequential(y, params) for y in sequences]
    return (
        sum(p[0] for p in parts),
        np.vstack([p[1] for p in parts]),
        sum(p[2] for p in parts),
    )


# Two-state chains whose data alternate between the states' means, so that each step
# multiplies the forward vector's total by about max(g, e_wrong) ~ g: the scans'
# renormalisation interval (from g, the smallest entry of A) must keep the unnormalised
# vectors and block products above underflow, down to g = 0 (renormalised every step).
@pytest.mark.parametrize("g", [0.02, 1e-20, 1e-60, 1e-150, 1e-250, 0.0])
@pytest.mark.parametrize("emission", ["poisson", "gaussian"])
def test_extreme_transitions_renormalisation_interval(g, emission):
    A = np.array([[1.0 - g, g], [g, 1.0 - g]])
    params = {"startprob": np.array([0.5, 0.5]), "transmat": A}
    T = 1237  # L = 36, B = 35: a padded last block
    t = np.arange(T)
    if emission == "poisson":
        # e_wrong = exp(-λ) λ^y / (λ^y e^{-1}...) ~ 1e-30 for the counts 0 and 60.
        params["rates"] = np.array([0.5, 60.0])
        y = np.where(t % 2 == 0, 0, 60)
    else:
        params["means"] = np.array([-1.0, 1.0])
        params["variances"] = np.array([0.029, 0.029])  # e_wrong = exp(-2 / 0.029) ~ 1e-30
        y = np.where(t % 2 == 0, -1.0, 1.0)
    # Also several sequences: the restarts carry the vectors' totals.
    lengths = [1, 35, 36, 400, 1, 764]
    sequences = np.split(y, np.cumsum(lengths)[:-1])
    for data in ([y], sequences):
        ll, gamma, xi = sequential_many(data, params)
        assert np.isfinite(ll)
        assert hmm.loglik(data, params) == pytest.approx(ll, rel=1e-12)
        expected = hmm.e_step(data, params)
        np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
        np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "rates", [[0.0, 3.0, 8.0], [0.0, 2000.0, 9000.0]], ids=["table", "direct"]
)
def test_poisson_emission_paths_and_zero_rates_match_the_sequential_recursions(rates):
    # Counts below max(T, 4096) take their factors from a table of the values, larger ones
    # the direct log-density; a zero rate emits only zeros (0 log 0 = 0).
    params = {**POISSON, "rates": np.array(rates)}
    y, _ = simulate(params, 300, seed=81)
    d = hmm._prepare(y, "poisson")
    assert (d.value_index is None) == (rates[-1] > 1000)
    ll, gamma, xi = sequential(y, params)
    assert hmm.loglik(y, params) == pytest.approx(ll, rel=1e-12)
    expected = hmm.e_step(y, params)
    np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
    np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)
    # Positive counts are impossible when every rate is 0.
    none = {**params, "rates": np.zeros(3)}
    assert hmm.loglik(y, none) == -np.inf
    assert hmm.loglik(np.zeros(5, dtype=int), none) == pytest.approx(np.log(1.0), abs=1e-12)


def test_an_unlikely_restart_after_a_long_unnormalised_stretch_does_not_underflow():
    # g = 1e-10 allows 16 steps between renormalisations (each shrinks by about g, the
    # data alternating between the states' values); every sequence starts in state 0
    # (π = e_0) with a count that state 0 makes about 1e-217 times less likely: the
    # restart's factor π·e_t must not multiply the stretch's 1e-150.
    params = {
        "startprob": np.array([1.0, 0.0]),
        "transmat": np.array([[1 - 1e-10, 1e-10], [1e-10, 1 - 1e-10]]),
        "rates": np.array([2.0, 150.0]),
    }
    lengths = [37, 40, 23, 55, 45, 200]
    sequences = [np.where(np.arange(n) % 2 == 0, 150, 2) for n in lengths]
    ll, gamma, xi = sequential_many(sequences, params)
    assert np.isfinite(ll)
    assert hmm.loglik(sequences, params) == pytest.approx(ll, rel=1e-12)
    expected = hmm.e_step(sequences, params)
    np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
    np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("a01", [0.0, 1e-300])
def test_transitions_with_zeros_and_a_one_hot_start(a01):
    # State 0 can (almost) never be left and the chain starts there, while the data fit
    # state 1: the block maps' rows differ by far more than g, so the vectors entering
    # the blocks are chained one block at a time. With a01 = 0 the chain never leaves
    # state 0: ℓ = Σ log f_0(y_t) in closed form (the posteriors are not compared: β of
    # the stuck state falls below underflow against the unreachable one's, as in the
    # textbook recursion, which overflows there). Else against the sequential recursions.
    params = {
        "startprob": np.array([1.0, 0.0]),
        "transmat": np.array([[1.0 - a01, a01], [1e-3, 1 - 1e-3]]),
        "means": np.array([0.0, 5.0]),
        "variances": np.array([1.0, 1.0]),
    }
    y = 5.0 + np.random.default_rng(91).normal(0, 0.1, 400)
    if a01 == 0.0:
        ll = stats.norm.logpdf(y, 0.0, 1.0).sum()
        assert hmm.loglik(y, params) == pytest.approx(ll, rel=1e-12)
        return
    ll, gamma, xi = sequential(y, params)
    assert hmm.loglik(y, params) == pytest.approx(ll, rel=1e-12)
    expected = hmm.e_step(y, params)
    np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
    np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)


def test_sequence_boundaries_on_block_edges_match_the_sequential_recursions():
    # T = 400: L = B = 20. Sequences end at a block's last step, start at a block's first
    # step, fill a block exactly, last one step, and the last one ends the series.
    lengths = [20, 1, 19, 20, 7, 13, 1, 1, 38, 100, 60, 120]
    T = sum(lengths)
    assert T == 400
    y, _ = simulate(GAUSS, T, seed=71, lengths=lengths)
    sequences = np.split(y, np.cumsum(lengths)[:-1])
    ll, gamma, xi = sequential_many(sequences, GAUSS)
    assert hmm.loglik(y, GAUSS, lengths=lengths) == pytest.approx(ll, rel=1e-12)
    expected = hmm.e_step(y, GAUSS, lengths=lengths)
    np.testing.assert_allclose(expected["posteriors"], gamma, atol=1e-10)
    np.testing.assert_allclose(expected["transitions"], xi, rtol=1e-9, atol=1e-10)
    # The M-step from the internal E-step's sums equals the one from γ and ξ.
    d = hmm._prepare(y, "gaussian", lengths)
    stats, _ = hmm._e_step(d, GAUSS)
    from_posteriors = hmm.m_step(
        y, {"posteriors": gamma, "transitions": xi}, emission="gaussian", lengths=lengths
    )
    for name, value in hmm._m_step(d, stats).items():
        np.testing.assert_allclose(value, from_posteriors[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("params", [POISSON, GAUSS], ids=["poisson", "gaussian"])
def test_e_steps_reusing_their_work_arrays_match_fresh_ones(params):
    # The E-step keeps its large arrays between calls on the same data (fit() empties
    # them at the end): nothing of one call may leak into the next.
    lengths = [300, 1, 436]
    y, _ = simulate(params, sum(lengths), seed=101, lengths=lengths)
    other = {**params, "transmat": np.full((3, 3), 1 / 3), "startprob": np.eye(3)[2]}
    d = hmm._prepare(y, hmm._emission_of(params), lengths)
    for p in (params, other, params):
        stats, ll = hmm._e_step(d, p)
        fresh, ll_fresh = hmm._e_step(hmm._prepare(y, hmm._emission_of(params), lengths), p)
        assert ll == ll_fresh
        for name, value in fresh.items():
            np.testing.assert_array_equal(stats[name], value)
    assert d.work
    result = hmm.fit(y, 3, emission=hmm._emission_of(params), lengths=lengths, init=params)
    assert not result._prepared.work


# --------------------------------------------------------------------------------------
# Fits against hmmlearn
# --------------------------------------------------------------------------------------


def _sorted_hmmlearn(model, key):
    order = np.argsort(key)
    return model.startprob_[order], model.transmat_[np.ix_(order, order)], order


START_P = {
    "startprob": np.full(3, 1 / 3),
    "transmat": np.full((3, 3), 0.1) + 0.7 * np.eye(3),
    "rates": np.array([2.0, 5.0, 8.0]),
}
START_G = {
    "startprob": np.full(3, 1 / 3),
    "transmat": np.full((3, 3), 0.1) + 0.7 * np.eye(3),
    "means": np.array([-1.0, 0.5, 2.0]),
    "variances": np.array([1.0, 1.0, 1.0]),
}


def test_poisson_fit_agrees_with_hmmlearn():
    lengths = [700, 500]
    y, _ = simulate(POISSON, sum(lengths), seed=11, lengths=lengths)
    result = hmm.fit(y, 3, emission="poisson", lengths=lengths, init=START_P, tol=1e-12)
    ref = PoissonHMM(3, n_iter=20_000, tol=1e-12, init_params="", params="stl")
    ref.startprob_, ref.transmat_ = START_P["startprob"], START_P["transmat"]
    ref.lambdas_ = START_P["rates"][:, None]
    ref.fit(y[:, None], lengths)
    start, trans, order = _sorted_hmmlearn(ref, ref.lambdas_.ravel())
    assert result.converged
    assert result.loglik == pytest.approx(ref.score(y[:, None], lengths), rel=1e-10)
    np.testing.assert_allclose(result.params["rates"], ref.lambdas_.ravel()[order], rtol=1e-6)
    np.testing.assert_allclose(result.params["transmat"], trans, atol=1e-6)
    np.testing.assert_allclose(result.params["startprob"], start, atol=1e-6)


def test_gaussian_fit_agrees_with_hmmlearn():
    sequences = [simulate(GAUSS, n, seed)[0] for n, seed in ((800, 21), (400, 22))]
    result = hmm.fit(sequences, 3, emission="gaussian", init=START_G, tol=1e-12)
    X, lengths = np.concatenate(sequences)[:, None], [len(s) for s in sequences]
    ref = GaussianHMM(
        3, "diag", n_iter=20_000, tol=1e-12, init_params="", params="stmc", covars_prior=0.0
    )
    ref.startprob_, ref.transmat_ = START_G["startprob"], START_G["transmat"]
    ref.means_, ref.covars_ = START_G["means"][:, None], START_G["variances"][:, None]
    ref.fit(X, lengths)
    start, trans, order = _sorted_hmmlearn(ref, ref.means_.ravel())
    assert result.converged
    assert result.loglik == pytest.approx(ref.score(X, lengths), rel=1e-10)
    np.testing.assert_allclose(result.params["means"], ref.means_.ravel()[order], atol=1e-6)
    np.testing.assert_allclose(
        result.params["variances"], ref.covars_.reshape(3, -1)[order, 0], rtol=1e-6
    )
    np.testing.assert_allclose(result.params["transmat"], trans, atol=1e-6)
    np.testing.assert_allclose(result.params["startprob"], start, atol=1e-6)


def test_default_fit_reaches_the_maximum_and_history_is_monotone():
    y, _ = simulate(POISSON, 1500, seed=31)
    result = hmm.fit(y, 3, emission="poisson")
    # hmmlearn started at the truth, run to convergence: a local maximum near it.
    ref = PoissonHMM(3, n_iter=20_000, tol=1e-12, init_params="", params="stl")
    ref.startprob_, ref.transmat_ = POISSON["startprob"], POISSON["transmat"]
    ref.lambdas_ = POISSON["rates"][:, None]
    ref.fit(y[:, None])
    assert result.converged
    assert result.loglik >= ref.score(y[:, None]) - 1e-7
    # ℓ along the run, recomputed by the sequential oracle, never decreases.
    recomputed = [sequential(y, p)[0] for p in result.param_history]
    np.testing.assert_allclose(recomputed, result.loglik_history, rtol=1e-10)
    assert np.all(np.diff(recomputed) >= -1e-9 * abs(recomputed[-1]))


# --------------------------------------------------------------------------------------
# Standard errors and summary
# --------------------------------------------------------------------------------------


def test_one_state_se_is_the_poisson_closed_form_and_summary_labels_matrices():
    y = np.random.default_rng(41).poisson(3.0, size=400)
    one = hmm.fit(y, 1, emission="poisson")
    assert one.params["rates"][0] == pytest.approx(y.mean(), rel=1e-10)
    assert one.se["rates"][0] == pytest.approx(np.sqrt(y.mean() / y.size), rel=1e-4)
    sequences = [simulate(POISSON, 200, s)[0] for s in (42, 43, 44)]
    result = hmm.fit(sequences, 2, emission="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # startprob on the boundary
        se = result.se
    assert se["transmat"].shape == (2, 2) and se["rates"].shape == (2,)
    # Rows of A sum to 1, so the two entries of a row have the same standard error.
    np.testing.assert_allclose(se["transmat"][:, 0], se["transmat"][:, 1], rtol=1e-6)
    text = result.summary()
    assert "transmat[1,0]" in text and "rates[1]" in text


# --------------------------------------------------------------------------------------
# Bad input and degenerate fits
# --------------------------------------------------------------------------------------

COUNTS = np.array([0, 1, 3, 2, 5, 4, 0, 2])
BAD = {
    "2-D": (np.ones((4, 2)), {}, "1-D"),
    "NaN": (np.array([1.0, np.nan, 2.0]), {"emission": "gaussian"}, "NaN"),
    "negative": (np.array([1, -2, 3]), {}, r"counts \(>= 0\)"),
    "fraction": (np.array([1.5, 2.0, 3.0]), {}, "whole-number"),
    "k=0": (COUNTS, {"k": 0}, "k must be at least 1"),
    "k too big": (np.array([1, 1, 2]), {"k": 3}, "distinct"),
    "empty sequence": ([COUNTS, np.array([], dtype=int)], {}, "sequence 1 is empty"),
    "zero length": (COUNTS, {"lengths": [8, 0]}, "zero-length"),
    "lengths sum": (COUNTS, {"lengths": [3, 3]}, "add up to 6"),
    "emission": (COUNTS, {"emission": "binomial"}, "emission must be"),
    "init keys": (COUNTS, {"init": {"startprob": [1.0]}}, "missing"),
    "transmat rows": (
        COUNTS,
        {"init": {"startprob": [0.5, 0.5], "transmat": [[0.5, 0.6], [0.5, 0.5]], "rates": [1, 2]}},
        "along each row",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_a_clear_value_error(case):
    data, kwargs, match = BAD[case]
    kwargs = {"k": 2, "emission": "poisson", **kwargs}
    with pytest.raises(ValueError, match=match):
        hmm.fit(data, kwargs.pop("k"), **kwargs)


def test_decoding_rejects_bad_params():
    with pytest.raises(ValueError, match="transmat must have shape"):
        hmm.viterbi(COUNTS, {**POISSON, "transmat": np.eye(2)})
    with pytest.raises(ValueError, match="variances must be positive"):
        hmm.loglik([0.0, 1.0], {**GAUSS, "variances": np.array([1.0, 0.0, 1.0])})


def test_a_state_with_no_responsibility_warns_and_stays_finite():
    # State 0 can be neither started in nor entered: it never gets any responsibility,
    # and the fit is the one-state model (the Poisson MLE, the mean) with a warning.
    y = np.random.default_rng(51).poisson(2.0, size=300)
    init = {
        "startprob": np.array([0.0, 1.0]),
        "transmat": np.array([[0.5, 0.5], [0.0, 1.0]]),
        "rates": np.array([50.0, 1.0]),
    }
    with pytest.warns(RuntimeWarning, match=r"state\(s\) \[0\] get no responsibility"):
        result = hmm.fit(y, 2, emission="poisson", init=init)
    assert all(np.all(np.isfinite(v)) for v in result.params.values())
    assert result.params["rates"][1] == pytest.approx(y.mean(), rel=1e-9)
    assert result.loglik == pytest.approx(stats.poisson.logpmf(y, y.mean()).sum(), rel=1e-12)
    assert np.all(np.diff(result.loglik_history) >= -1e-9 * abs(result.loglik))


def test_a_collapsing_variance_is_floored_with_a_warning():
    # One state sits on a repeated value: its variance would shrink to zero.
    rng = np.random.default_rng(61)
    y = np.concatenate([rng.normal(0, 1, 200), np.full(30, 5.0), rng.normal(0, 1, 200)])
    init = {
        "startprob": np.array([0.5, 0.5]),
        "transmat": np.array([[0.95, 0.05], [0.05, 0.95]]),
        "means": np.array([0.0, 5.0]),
        "variances": np.array([1.0, 0.1]),
    }
    with pytest.warns(RuntimeWarning, match=r"state\(s\) \[1\] was held at the floor"):
        result = hmm.fit(y, 2, emission="gaussian", init=init)
    assert result.params["variances"][1] == pytest.approx(hmm.VARIANCE_FLOOR * y.var())
    assert np.isfinite(result.loglik)
