"""The convergence toolkit: monotonicity guard, stopping rule, SQUAREM, finite differences,
the driver's warnings and the result summary."""

import collections
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import emlib
from emlib import convergence, em, linkage, moth, poisson_mixture, zero_inflated_poisson, zinb
from emlib.convergence import ConvergenceWarning, MonotonicityError
from emlib.em import EMModel, run

# --------------------------------------------------------------------------------------
# check_monotone and relative_change
# --------------------------------------------------------------------------------------


def test_check_monotone_passes_on_increasing_history():
    convergence.check_monotone([-100.0, -50.0, -49.0, -49.0, -48.999])


def test_check_monotone_names_the_iteration_of_a_decrease():
    with pytest.raises(MonotonicityError, match=r"decreased at iteration 3\b"):
        convergence.check_monotone([-100.0, -50.0, -49.0, -49.5, -48.0])


def test_check_monotone_rejects_a_nan():
    with pytest.raises(MonotonicityError, match=r"nan at iteration 2\b"):
        convergence.check_monotone([-100.0, -50.0, np.nan])


@pytest.mark.parametrize("loglik", [-1e6, -1234.5, -3.0, -0.25, 0.0, 42.0])
def test_check_monotone_tolerates_rounding_but_not_real_decreases(loglik):
    scale = max(abs(loglik), 1.0)
    convergence.check_monotone([loglik, loglik - 1e-13 * scale])  # rounding: allowed
    with pytest.raises(MonotonicityError, match="iteration 1"):
        convergence.check_monotone([loglik, loglik - 1e-8 * scale])


# --------------------------------------------------------------------------------------
# guard_batch: the same guard on many fits at once
# --------------------------------------------------------------------------------------

BATCH_OLD = np.array([-1e6, -1234.5, -3.0, -0.25, 0.0, 42.0])
FIT_NAMES = np.array([10, 11, 12, 13, 14, 15])


def test_guard_batch_passes_rises_and_rounding_level_decreases():
    scale = np.maximum(np.abs(BATCH_OLD), 1.0)
    convergence.guard_batch(BATCH_OLD, BATCH_OLD + 1.0, iteration=1, labels=FIT_NAMES)
    convergence.guard_batch(BATCH_OLD, BATCH_OLD, iteration=1, labels=FIT_NAMES)
    # 1e-13 relative is rounding in a sum over observations, well inside MONOTONE_RTOL.
    convergence.guard_batch(BATCH_OLD, BATCH_OLD - 1e-13 * scale, iteration=1)


@pytest.mark.parametrize("fit", range(BATCH_OLD.size))
def test_guard_batch_names_the_fit_whose_likelihood_decreased(fit):
    new = BATCH_OLD.copy()
    scale = max(abs(BATCH_OLD[fit]), 1.0)
    new[fit] -= 10 * convergence.MONOTONE_RTOL * scale  # beyond the rounding allowance
    with pytest.raises(MonotonicityError, match=rf"of fit {10 + fit} decreased at iteration 5\b"):
        convergence.guard_batch(BATCH_OLD, new, iteration=5, labels=FIT_NAMES)


def test_guard_batch_names_the_first_of_several_failing_fits():
    new = BATCH_OLD - np.array([0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    with pytest.raises(MonotonicityError, match="of fit 12 "):
        convergence.guard_batch(BATCH_OLD, new, iteration=2, labels=FIT_NAMES)


@pytest.mark.parametrize("bad", [-np.inf, np.nan, np.inf])
def test_guard_batch_rejects_a_value_that_is_not_finite(bad):
    new = BATCH_OLD + 1.0
    new[3] = bad
    with pytest.raises(MonotonicityError, match=rf"of fit 13 became {bad} at iteration 4\b"):
        convergence.guard_batch(BATCH_OLD, new, iteration=4, labels=FIT_NAMES)


def test_guard_batch_formats_the_callers_message():
    new = np.array([-9.0, -6.0])
    message = "gene {label}: {old!r} -> {new!r} (by {by:.1f}) at iteration {iteration}"
    with pytest.raises(MonotonicityError) as caught:
        convergence.guard_batch(
            np.array([-10.0, -5.0]), new, iteration=3, labels=np.array([4, 7]), message=message
        )
    assert (
        str(caught.value) == "gene 7: np.float64(-5.0) -> np.float64(-6.0) (by 1.0) at iteration 3"
    )


def test_zinb_guard_message_is_the_matrix_loops():
    with pytest.raises(MonotonicityError) as caught:
        convergence.guard_batch(
            np.array([-10.0, -5.0]),
            np.array([-9.0, np.nan]),
            iteration=8,
            labels=np.array([3, 41]),
            message=zinb._GUARD_MESSAGE,
        )
    assert str(caught.value) == (
        "zinb: the log-likelihood of gene 41 went from np.float64(-5.0) to np.float64(nan) "
        "at iteration 8: EM cannot lower the likelihood, so the E-step and M-step disagree"
    )


@pytest.mark.parametrize(
    ("old", "new"), [(-10.0, -11.0), (-3.0, np.nan), (-3.0, -np.inf), (-np.inf, -np.inf)]
)
def test_guard_on_numbers_is_the_batch_of_one(old, new):
    # One fit's values are numbers (emlib._per_fit.ONE), and the guard takes a short cut
    # for a finite rise: it must fail exactly where the batch of one fails.
    with pytest.raises(MonotonicityError) as scalar:
        convergence.guard_batch(old, new, iteration=6)
    with pytest.raises(MonotonicityError) as batch:
        convergence.guard_batch(np.array([old]), np.array([new]), iteration=6)
    # The values as the caller holds them: numbers here, numpy scalars from the arrays.
    assert str(scalar.value) == re.sub(r"np\.float64\(([^)]*)\)", r"\1", str(batch.value))
    assert "of fit" not in str(scalar.value)  # one fit: the message names only the iteration


@pytest.mark.parametrize("new", [-10.0, -10.0 - 1e-13 * 10, -9.0, 0.0])
def test_guard_on_numbers_passes_what_the_batch_of_one_passes(new):
    convergence.guard_batch(-10.0, new, iteration=6)
    convergence.guard_batch(np.array([-10.0]), np.array([new]), iteration=6)


def test_guard_on_numbers_rejects_an_infinite_rise():
    with pytest.raises(MonotonicityError, match="became inf"):
        convergence.guard_batch(-10.0, np.inf, iteration=6)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (-100.0, -99.0, 1 / 99),
        (-99.0, -100.0, 1 / 100),
        (-1e6, -1e6, 0.0),
        (0.5, 0.25, 0.25),  # |new| < 1: denominator floored at 1
        (-0.001, 0.0, 0.001),
        (10.0, 12.0, 2 / 12),
    ],
)
def test_relative_change_examples(old, new, expected):
    assert convergence.relative_change(old, new) == pytest.approx(expected, rel=1e-15, abs=0)


# --------------------------------------------------------------------------------------
# The driver's guard on a broken model
# --------------------------------------------------------------------------------------


def two_normal_model(*, swapped: bool) -> EMModel:
    """A two-component normal mixture with unit variances, ψ the weight of component a.

    With ``swapped=True`` it has the bug from the lecture notes: the E-step weights
    component a by ψ and returns w, the responsibility of component b, and the M-step
    sets ψ = mean(w), which is the weight of b.
    """

    def e_step(x, params):
        psi, mu_a, mu_b = params["psi"], params["mu_a"], params["mu_b"]
        dens_a = psi * stats.norm.pdf(x, mu_a, 1.0)
        dens_b = (1 - psi) * stats.norm.pdf(x, mu_b, 1.0)
        w = dens_b / (dens_a + dens_b)
        return w, float(np.sum(np.log(dens_a + dens_b)))

    def m_step(x, w):
        psi = np.mean(w) if swapped else np.mean(1 - w)
        return {
            "psi": float(psi),
            "mu_a": float(np.sum((1 - w) * x) / np.sum(1 - w)),
            "mu_b": float(np.sum(w * x) / np.sum(w)),
        }

    return EMModel(
        name="two-normal" + (" (swapped weights)" if swapped else ""),
        e_step=e_step,
        m_step=m_step,
        pack=lambda p: np.array([p["psi"], p["mu_a"], p["mu_b"]]),
        unpack=lambda v: {"psi": float(v[0]), "mu_a": float(v[1]), "mu_b": float(v[2])},
        in_domain=lambda v: bool(0 < v[0] < 1),
    )


def mixture_loglik(x, params):
    """The mixture log-likelihood from scipy.stats, independent of the model's E-step."""
    psi, mu_a, mu_b = params["psi"], params["mu_a"], params["mu_b"]
    return float(
        np.sum(
            np.logaddexp(
                np.log(psi) + stats.norm.logpdf(x, mu_a, 1.0),
                np.log1p(-psi) + stats.norm.logpdf(x, mu_b, 1.0),
            )
        )
    )


@pytest.fixture(scope="module")
def unbalanced_mixture():
    rng = np.random.default_rng(2024)
    n = 400
    in_a = rng.random(n) < 0.2
    return np.where(in_a, rng.normal(0.0, 1.0, n), rng.normal(4.0, 1.0, n))


START = {"psi": 0.3, "mu_a": -0.5, "mu_b": 3.0}


def test_swapped_weights_really_lower_the_likelihood(unbalanced_mixture):
    """Check, independently of the driver, that one buggy step goes down on this data."""
    x = unbalanced_mixture
    model = two_normal_model(swapped=True)
    w, _ = model.e_step(x, START)
    after = model.m_step(x, w)
    assert mixture_loglik(x, after) < mixture_loglik(x, START) - 1.0


def test_driver_guard_fires_on_swapped_weights(unbalanced_mixture):
    with pytest.raises(MonotonicityError, match=r"decreased at iteration 1\b"):
        run(two_normal_model(swapped=True), unbalanced_mixture, [START], tol=1e-10)


def test_driver_guard_is_silent_on_the_correct_model(unbalanced_mixture):
    x = unbalanced_mixture
    result = run(two_normal_model(swapped=False), x, [START], tol=1e-12)
    assert result.converged
    assert result.params["psi"] == pytest.approx(0.2, abs=0.06)
    recomputed = [mixture_loglik(x, p) for p in result.param_history]
    np.testing.assert_allclose(recomputed, result.loglik_history, rtol=1e-10)
    assert np.all(np.diff(recomputed) >= -1e-9)


def test_guard_fires_under_squarem_too(unbalanced_mixture):
    with pytest.raises(MonotonicityError, match="iteration"):
        run(
            two_normal_model(swapped=True),
            unbalanced_mixture,
            [START],
            tol=1e-10,
            accelerate="squarem",
        )


# --------------------------------------------------------------------------------------
# SQUAREM
# --------------------------------------------------------------------------------------

MOTH_PREPARED = moth._prepare(moth.GIVENS_HOETING_COUNTS)


@settings(max_examples=40, deadline=None)
@given(
    start=st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3),
    cycles=st.integers(1, 6),
)
def test_squarem_step_never_lowers_the_moth_likelihood(start, cycles):
    model = moth.MODEL
    em_map = model.em_map(MOTH_PREPARED)
    objective = model.objective(MOTH_PREPARED)
    theta = (np.array(start) / np.sum(start))[:2]
    loglik = objective(theta)
    state = convergence.SquaremState()
    for _ in range(cycles):
        new_theta, new_loglik, used, _ = convergence.squarem_step(
            theta, loglik, em_map, objective, model.in_domain, state
        )
        assert model.in_domain(new_theta)
        assert 1 <= used <= 3
        # The reported value is the log-likelihood at the returned point ...
        p_c, p_i = new_theta
        x = np.array(moth.GIVENS_HOETING_COUNTS)
        probs = [
            p_c**2 + 2 * p_c * (1 - p_c),
            p_i**2 + 2 * p_i * (1 - p_c - p_i),
            (1 - p_c - p_i) ** 2,
        ]
        assert new_loglik == pytest.approx(stats.multinomial.logpmf(x, x.sum(), probs))
        # ... and it is no lower than the input, up to the guard's rounding allowance.
        assert new_loglik >= loglik - convergence.decrease_tolerance(loglik)
        theta, loglik = new_theta, new_loglik


@settings(max_examples=30, deadline=None)
@given(theta0=st.floats(0.0, 1.0))
def test_squarem_step_never_lowers_the_linkage_likelihood(theta0):
    model = linkage.MODEL
    prepared = linkage._prepare(linkage.DLR_COUNTS)
    em_map, objective = model.em_map(prepared), model.objective(prepared)
    theta = np.array([theta0])
    loglik = objective(theta)
    state = convergence.SquaremState(step_max=64.0)  # invite over-long extrapolations
    for _ in range(4):
        theta_new, loglik_new, _, _ = convergence.squarem_step(
            theta, loglik, em_map, objective, model.in_domain, state
        )
        assert loglik_new >= loglik - convergence.decrease_tolerance(loglik)
        assert 0.0 <= theta_new[0] <= 1.0
        theta, loglik = theta_new, loglik_new


def moth_batch():
    """The moth model's EM map and ℓ, row by row, on a batch of packed points (n, 2)."""
    model = moth.MODEL
    em_map, objective = model.em_map(MOTH_PREPARED), model.objective(MOTH_PREPARED)

    # need: the rows the cycle will use (squarem_cycle_batch); a batch may compute all.
    def batch_map(v, need=None):
        return np.array([em_map(row) for row in v]), np.array([objective(row) for row in v])

    def batch_objective(v, need=None):
        return np.array([objective(row) for row in v])

    def batch_domain(v):
        return np.array([model.in_domain(row) for row in v])

    return batch_map, batch_objective, batch_domain


MOTH_STARTS = np.array([[0.3, 0.3], [0.05, 0.9], [0.9, 0.05], [0.01, 0.01]])


def _assert_row_as_alone(out, i, em_map, objective, v, step_max, rho, **options):
    """Row ``i`` of the cycle's output ``out`` on a batch is its output on row i alone."""
    alone = convergence.squarem_cycle_batch(
        em_map, objective, v[i : i + 1], step_max[i : i + 1], last_rho=rho[i : i + 1], **options
    )
    for whole, part in zip(out, alone, strict=True):
        assert np.array_equal(whole[i], part[0], equal_nan=True)
    # ... and its output as one fit on numbers (a vector point, emlib._per_fit.ONE).
    one = convergence.squarem_cycle_batch(
        lambda x, need: (lambda m, ll: (m[0], ll[0].item()))(*em_map(x[None], np.array([need]))),
        lambda x, need: objective(x[None], np.array([need]))[0].item(),
        v[i],
        step_max[i].item(),
        last_rho=rho[i].item(),
        **{**options, "in_domain": lambda x: options["in_domain"](x[None])[0].item()},
    )
    for whole, part in zip(out, one, strict=True):
        assert np.ndim(part) == np.ndim(whole[i])  # numbers, and a vector point
        assert np.array_equal(whole[i], part, equal_nan=True)


@pytest.mark.parametrize("backtracks", [0, 6])
def test_squarem_cycle_batch_treats_each_fit_as_a_batch_of_one(backtracks):
    batch_map, batch_objective, batch_domain = moth_batch()
    options = {"in_domain": batch_domain, "tol": 1e-8, "xtol": None, "backtracks": backtracks}
    n = MOTH_STARTS.shape[0]
    v, step_max, rho = MOTH_STARTS.copy(), np.full(n, 16.0), np.full(n, np.inf)
    for _ in range(3):
        ll_start = batch_objective(v)
        out = convergence.squarem_cycle_batch(
            batch_map, batch_objective, v, step_max, last_rho=rho, **options
        )
        for i in range(n):
            _assert_row_as_alone(out, i, batch_map, batch_objective, v, step_max, rho, **options)
        v_new, ll_new, used, _, step_max, rho, _ = out
        assert np.all(batch_domain(v_new))
        np.testing.assert_array_equal(ll_new, batch_objective(v_new))
        # Never below the cycle's start (up to rounding).
        assert np.all(ll_new >= ll_start - convergence.decrease_tolerance(ll_start))
        assert np.all((1 <= used) & (used <= 2 + backtracks + 1))
        assert np.all(step_max >= 1.0)
        v = v_new


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_run_batch_takes_its_scale_in_any_form(accelerate):
    """A floor given as a number, an int, a list, one per coordinate or one row per fit is
    the same floor: one fit (on numbers) and the batch end alike, bit for bit."""
    batch_map, batch_objective, batch_domain = moth_batch()
    model = moth.MODEL
    em_map, objective = model.em_map(MOTH_PREPARED), model.objective(MOTH_PREPARED)
    d = MOTH_STARTS.shape[1]
    options = {"tol": 1e-12, "accelerate": accelerate}
    forms = [2.0, 2, [2.0] * d, np.full(d, 2.0), np.full((1, d), 2.0)]
    alone = [
        em.run_batch(
            lambda rows, v: (em_map(v), objective(v)),
            lambda rows, v: objective(v),
            model.in_domain,
            MOTH_STARTS[:1],
            vectors=True,
            scale=scale,
            **options,
        )
        for scale in forms
    ]
    batches = [
        em.run_batch(
            lambda rows, v: batch_map(v),
            lambda rows, v: batch_objective(v),
            batch_domain,
            MOTH_STARTS,
            scale=scale,
            **options,
        )
        for scale in (2.0, [2.0] * d, np.full(MOTH_STARTS.shape, 2.0))
    ]
    for runs in (alone, batches):
        for other in runs[1:]:
            for field in ("points", "loglik", "n_iter", "error_bound"):
                np.testing.assert_array_equal(getattr(other, field), getattr(runs[0], field))
    np.testing.assert_array_equal(alone[0].n_iter[0], batches[0].n_iter[0])


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_run_batch_on_vectors_is_the_batch_of_one(accelerate):
    """vectors=True (a single start's fit called on its vector, as em.run does) takes the
    path of the same fit given in row form, bit for bit."""
    batch_map, batch_objective, batch_domain = moth_batch()
    model = moth.MODEL
    em_map, objective = model.em_map(MOTH_PREPARED), model.objective(MOTH_PREPARED)
    options = {"tol": 1e-12, "accelerate": accelerate, "xtol": 1e-14}
    for start in MOTH_STARTS:
        rows = em.run_batch(
            lambda rows, v: batch_map(v),
            lambda rows, v: batch_objective(v),
            batch_domain,
            start[None],
            **options,
        )
        vectors = em.run_batch(
            lambda rows, v: (em_map(v), objective(v)),
            lambda rows, v: objective(v),
            model.in_domain,
            start[None],
            vectors=True,
            **options,
        )
        assert rows.converged[0] and vectors.converged[0]
        for field in ("points", "loglik", "n_iter", "error_bound"):
            np.testing.assert_array_equal(getattr(vectors, field), getattr(rows, field))
        np.testing.assert_array_equal(vectors.loglik_history[0], rows.loglik_history[0])


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_run_batch_fits_each_start_as_if_it_were_alone(accelerate):
    """em.run_batch on four moth starts at once: each fit's path, stop and result are
    those of the same start run by itself (and, for one start, those of em.run)."""
    batch_map, batch_objective, batch_domain = moth_batch()
    options = {"tol": 1e-10, "accelerate": accelerate}
    evaluated = collections.Counter()  # rows the batch was asked to evaluate, per start

    def em_map(rows, v):
        evaluated.update(starts_of[rows].tolist())
        return batch_map(v)

    def objective(rows, v):
        evaluated.update(starts_of[rows].tolist())
        return batch_objective(v)

    starts_of = np.arange(len(MOTH_STARTS))
    together = em.run_batch(em_map, objective, batch_domain, MOTH_STARTS, **options)
    assert together.converged.all()
    evaluated_together, evaluated = evaluated, collections.Counter()
    for i, start in enumerate(MOTH_STARTS):
        starts_of = np.array([i])
        alone = em.run_batch(em_map, objective, batch_domain, start[None], **options)
        np.testing.assert_array_equal(together.points[i], alone.points[0])
        np.testing.assert_array_equal(together.loglik_history[i], alone.loglik_history[0])
        assert together.n_iter[i] == alone.n_iter[0]
        # Together, no fit is evaluated where it would not be alone.
        assert evaluated_together[i] == evaluated[i]
        convergence.check_monotone(together.loglik_history[i])
        params = {"p_C": start[0], "p_I": start[1], "p_T": 1 - start.sum()}
        fit = run(moth.MODEL, MOTH_PREPARED, [params], **options)
        np.testing.assert_allclose(fit.loglik_history, alone.loglik_history[0], rtol=1e-13)
        assert fit.n_iter == alone.n_iter[0]


@pytest.mark.parametrize("max_iter", [5, 9, 10_000])
@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_a_batch_of_mixture_fits_takes_each_fits_path_alone(accelerate, max_iter):
    """run_batch fits many mixtures at once (four starts of Hasselblad's mixture, in the row
    form, the model's steps run fit by fit): each fit takes the path em.run gives it alone,
    also where max_iter cuts the fits short at different points of their cycles."""
    prepared = poisson_mixture._prepare(HASSELBLAD)
    starts = [
        {"weights": np.array([w, 1 - w]), "means": np.array(m)}
        for w, m in [(0.5, (1.0, 3.1)), (0.2, (0.5, 4.0)), (0.9, (2.0, 2.5)), (0.5, (0.1, 8.0))]
    ]
    model = poisson_mixture.MODEL
    fits = [em._OneFit(model, prepared) for _ in starts]
    thetas, lls = np.array([model.pack(start) for start in starts]), []
    for fit, theta, start in zip(fits, thetas, starts, strict=True):
        expected, ll = model.e_step(prepared, start)
        fit.remember(theta, start, expected, ll)
        lls.append(ll)

    def em_map(rows, v):
        mapped = [fits[i].em_map(point) for i, point in zip(rows, v, strict=True)]
        return np.array([m for m, _ in mapped]), np.array([ll for _, ll in mapped])

    def objective(rows, v):
        return np.array([fits[i].objective(point) for i, point in zip(rows, v, strict=True)])

    def in_domain(v):
        return np.array([model.in_domain(point) for point in v])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = em.run_batch(
            em_map,
            objective,
            in_domain,
            thetas,
            loglik=lls,
            max_iter=max_iter,
            accelerate=accelerate,
        )
        for i, start in enumerate(starts):
            alone = run(model, prepared, [start], max_iter=max_iter, accelerate=accelerate)
            np.testing.assert_array_equal(batch.loglik_history[i], alone.loglik_history)
            assert (batch.n_iter[i], batch.converged[i]) == (alone.n_iter, alone.converged)
            assert batch.n_iter[i] <= max_iter
            np.testing.assert_array_equal(batch.points[i], model.pack(alone.param_history[-1]))
            convergence.check_monotone(batch.loglik_history[i])
    if max_iter > 100:
        assert len(set(batch.n_iter.tolist())) > 1  # the fits do stop apart


def test_run_batch_hooks_veto_a_stop_and_move_fits_between_steps():
    """run_batch's hooks, as zinb uses them: ``vet_stop`` vetoes fit 0's first stop (it
    takes more steps than alone, and ends at the same maximum), and ``between`` moves
    fit 2 to the maximum of fit 1's run after its first step and stops it there."""
    batch_map, batch_objective, batch_domain = moth_batch()

    def em_map(rows, v):
        return batch_map(v)

    def objective(rows, v):
        return batch_objective(v)

    options = {"tol": 1e-10, "accelerate": "squarem"}
    alone = em.run_batch(em_map, objective, batch_domain, MOTH_STARTS, **options)
    vetoed, calls = [], []

    def vet_stop(state, rows, done, bound):
        if 0 in rows[done] and not vetoed:
            vetoed.append(int(state.n_iter[0]))
            done = done & (rows != 0)
        return done, bound

    def between(state):
        calls.append(state.n_iter.copy())
        if len(calls) == 2:  # after the first step
            state.points[2], state.loglik[2] = alone.points[1], alone.loglik[1]
            state.loglik_history[2].append(alone.loglik[1])
            state.n_iter[2] += 1
            state.converged[2], state.error_bound[2], state.active[2] = True, 0.0, False

    run = em.run_batch(
        em_map,
        objective,
        batch_domain,
        MOTH_STARTS,
        vet_stop=vet_stop,
        between=between,
        **options,
    )
    assert vetoed == [alone.n_iter[0]]
    assert run.n_iter[0] > alone.n_iter[0] and run.converged[0]
    np.testing.assert_allclose(run.points[0], alone.points[0], atol=1e-8)
    assert np.all(calls[0] == 0) and len(calls) >= 3  # before the first step, then after each
    assert run.n_iter[2] == calls[1][2] + 1 and not run.active.any()
    np.testing.assert_array_equal(run.points[2], alone.points[1])
    assert run.loglik_history[2][-1] == alone.loglik[1]
    for i in (1, 3):  # the others as alone
        np.testing.assert_array_equal(run.loglik_history[i], alone.loglik_history[i])
    for history in run.loglik_history:
        convergence.check_monotone(history)


def test_run_batch_names_the_fit_whose_likelihood_fell():
    def em_map(rows, v):  # fit 1 moves away from the maximum of ℓ = −|v|²
        return np.where(rows[:, None] == 1, 1.1 * v, 0.5 * v), -np.sum(v * v, axis=1)

    def objective(rows, v):
        return -np.sum(v * v, axis=1)

    with pytest.raises(MonotonicityError, match="of fit 1"):
        em.run_batch(
            em_map, objective, lambda v: np.ones(len(v), bool), np.ones((3, 2)), accelerate=None
        )


@pytest.mark.parametrize("accelerate", ["squarem", None])
def test_points_the_m_step_makes_are_not_second_guessed_by_in_domain(accelerate):
    """The M-step defines the model's points (a weight can reach 0 exactly, on a boundary
    that an open-interval domain test excludes); in_domain only screens extrapolations.
    Here the M-step halves the distance to 1 while in_domain says v <= 0.5."""
    model = EMModel(
        name="halving",
        e_step=lambda x, p: (p["t"], -((p["t"] - 1.0) ** 2)),
        m_step=lambda x, t: {"t": (t + 1.0) / 2},
        pack=lambda p: np.array([p["t"]]),
        unpack=lambda v: {"t": float(v[0])},
        in_domain=lambda v: bool(v[0] <= 0.5),
    )
    fit = run(model, None, [{"t": 0.0}], tol=1e-10, accelerate=accelerate)
    assert fit.converged
    assert fit.params["t"] == pytest.approx(1.0, abs=1e-8)
    convergence.check_monotone(fit.loglik_history)


LINEAR_RATES = np.array([0.99, 0.9, 0.8])


def linear_domain(v):
    """A domain, v > 1/2, that cuts off the fixed point 0 of :func:`linear_batch`."""
    return np.all(v > 0.5, axis=1)


def linear_objective(v, need=None):
    return np.where(linear_domain(v), -np.sum(v * v, axis=1), -np.inf)


def linear_batch(v, need=None):
    """EM map v -> ρ v of rates ``LINEAR_RATES`` and ℓ(v) = −|v|²."""
    return LINEAR_RATES[:, None] * v, linear_objective(v)


@pytest.mark.parametrize("backtracks", [0, 6])
def test_squarem_cycle_batch_backtracks_towards_one(backtracks):
    """At rate 0.99 SQUAREM's α = |r| / |w| = 0.01 / 0.01² = 100 extrapolates a line
    exactly, to v (1 − α/100)² = 0: outside the domain v > 1/2. Halving α towards 1 gives
    50.5 (0.245, outside too), then 25.75: (0.7425)², and ρ times that after the
    stabilising step, is accepted, and becomes the new step bound."""
    v = np.ones((3, 2))
    out = convergence.squarem_cycle_batch(
        linear_batch,
        linear_objective,
        v,
        np.array([1000.0, 1.0, 1.0]),
        in_domain=linear_domain,
        tol=1e-8,
        xtol=None,
        last_rho=np.full(3, np.inf),
        backtracks=backtracks,
    )
    v_new, ll_new, used, done, step_max, _, _ = out
    v2 = LINEAR_RATES[:, None] ** 2 * v
    assert not done.any()
    if backtracks == 0:
        # The one α tried leaves the domain: two plain EM steps, and the bound back to 1.
        np.testing.assert_array_equal(v_new[0], v2[0])
        assert used[0] == 2 and step_max[0] == 1.0
    else:
        alpha = 25.75
        np.testing.assert_allclose(v_new[0], 0.99 * (1 - alpha / 100) ** 2, rtol=1e-10)
        assert used[0] == 3
        assert step_max[0] == pytest.approx(alpha, rel=1e-12)
        assert ll_new[0] > linear_objective(v2)[0]
    # Rows with step_max = 1 take the plain steps; the bound grows by the step factor.
    np.testing.assert_array_equal(v_new[1:], v2[1:])
    np.testing.assert_array_equal(step_max[1:], 4.0)


def test_squarem_cycle_batch_guards_its_plain_steps():
    """A plain EM step that lowers ℓ is a bug even where the extrapolation then rises."""

    def rising_map(v, need=None):  # v -> 1.1 v lowers ℓ = −|v|²
        return 1.1 * v, linear_objective(v)

    with pytest.raises(MonotonicityError, match="iteration 7"):
        convergence.squarem_cycle_batch(
            rising_map,
            linear_objective,
            np.ones((2, 2)),
            np.ones(2),
            in_domain=linear_domain,
            tol=1e-8,
            xtol=None,
            last_rho=np.full(2, np.inf),
            backtracks=0,
            guard=lambda old, new: convergence.guard_batch(old, new, iteration=7),
        )


HASSELBLAD = np.repeat(np.arange(10), [162, 267, 271, 185, 111, 61, 27, 8, 3, 1])


@pytest.mark.parametrize("max_iter", [3, 4, 7, 10, 13, 20, 31])
def test_backtracking_squarem_never_exceeds_max_iter(max_iter, monkeypatch):
    """Each halving of α costs a stabilising EM step: the driver gives a cycle only the
    halvings its budget has left. Every cycle here is charged the worst case, one
    stabilising step per halving allowed (real cycles on these data rarely halve)."""
    cycle = convergence.squarem_cycle_batch

    def worst_case(*args, backtracks, **kwargs):
        out = list(cycle(*args, backtracks=backtracks, **kwargs))
        out[2] = np.where(out[3], out[2], 3 + backtracks)
        return tuple(out)

    monkeypatch.setattr(convergence, "squarem_cycle_batch", worst_case)
    init = {"weights": np.array([0.5, 0.5]), "means": np.array([1.0, 3.1])}
    with pytest.warns(ConvergenceWarning):
        result = poisson_mixture.fit(HASSELBLAD, 2, init=init, tol=0.0, max_iter=max_iter)
    assert result.n_iter == max_iter
    convergence.check_monotone(result.loglik_history)


# --------------------------------------------------------------------------------------
# Warnings when a fit does not converge
# --------------------------------------------------------------------------------------


def test_non_converged_fit_warns_with_the_remedies():
    rng = np.random.default_rng(3)
    y = np.where(rng.random(500) < 0.3, 0, rng.poisson(2.0, 500))
    with pytest.warns(ConvergenceWarning, match="max_iter") as record:
        result = zero_inflated_poisson.fit(y, max_iter=2, tol=1e-14)
    assert not result.converged
    assert result.n_iter == 2
    message = str(record[0].message)
    assert "squarem" in message
    assert "2 EM-map evaluations" in message


def test_rate_warns_on_a_non_converged_fit():
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        result = linkage.fit(max_iter=1, tol=1e-14)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        emlib.rate(result)


def test_converged_fit_does_not_warn():
    # filterwarnings=error turns any warning into a failure here.
    assert linkage.fit(tol=1e-12).converged


# --------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------


def f_scalar(x):
    return np.sin(x[0]) * x[1] ** 2


def f_gradient(x):
    return np.array([np.cos(x[0]) * x[1] ** 2, 2 * np.sin(x[0]) * x[1]])


def f_hessian(x):
    return np.array(
        [
            [-np.sin(x[0]) * x[1] ** 2, 2 * np.cos(x[0]) * x[1]],
            [2 * np.cos(x[0]) * x[1], 2 * np.sin(x[0])],
        ]
    )


def g_vector(x):
    return np.array([np.sin(x[0]) * x[1] ** 2, np.exp(x[0] * x[1]), x[0] / x[1]])


def g_jacobian(x):
    e = np.exp(x[0] * x[1])
    return np.array(
        [
            [np.cos(x[0]) * x[1] ** 2, 2 * np.sin(x[0]) * x[1]],
            [x[1] * e, x[0] * e],
            [1 / x[1], -x[0] / x[1] ** 2],
        ]
    )


POINTS = [np.array(p) for p in [(0.3, 0.7), (1.0, 2.0), (0.7, -1.5), (1.2, 3.0), (-0.5, 0.4)]]


@pytest.mark.parametrize("x", POINTS)
def test_jacobian_matches_analytic(x):
    np.testing.assert_allclose(
        convergence.jacobian(f_scalar, x), f_gradient(x)[None, :], rtol=1e-6
    )
    np.testing.assert_allclose(convergence.jacobian(g_vector, x), g_jacobian(x), rtol=1e-6)


@pytest.mark.parametrize("x", POINTS)
def test_hessian_matches_analytic(x):
    np.testing.assert_allclose(convergence.hessian(f_scalar, x), f_hessian(x), rtol=1e-6)


def test_hessian_of_a_quadratic_in_three_dimensions():
    a = np.array([[4.0, 1.0, -2.0], [1.0, 3.0, 0.5], [-2.0, 0.5, 5.0]])
    b = np.array([1.0, -2.0, 0.5])
    x = np.array([0.2, -1.3, 2.1])
    np.testing.assert_allclose(
        convergence.hessian(lambda v: 0.5 * v @ a @ v + b @ v, x), a, rtol=1e-6
    )
    np.testing.assert_allclose(
        convergence.jacobian(lambda v: a @ v + b, x), a, rtol=1e-6, atol=1e-12
    )


# --------------------------------------------------------------------------------------
# EMResult.summary
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fit", "names"),
    [
        (lambda: linkage.fit(), ["theta"]),
        (lambda: moth.fit(), ["p_C", "p_I", "p_T"]),
        (
            lambda: zero_inflated_poisson.fit(
                np.where(np.random.default_rng(0).random(300) < 0.3, 0, 2 + np.arange(300) % 4)
            ),
            ["lam", "pi"],
        ),
    ],
)
def test_summary_names_every_parameter(fit, names):
    result = fit()
    text = result.summary()
    assert "converged" in text
    assert "NOT converged" not in text
    lines = text.splitlines()
    for name in names:
        (row,) = [line for line in lines if line.split()[0] == name]
        estimate, error = map(float, row.split()[1:])
        assert estimate == pytest.approx(result.params[name], rel=1e-5)
        assert error == pytest.approx(result.se[name], rel=1e-3)


def test_summary_of_a_non_converged_fit_says_so():
    with pytest.warns(ConvergenceWarning):
        result = linkage.fit(max_iter=1, tol=1e-14)
    assert "NOT converged" in result.summary()


@pytest.mark.parametrize("max_iter", [3, 4, 7, 10, 13])
def test_backtracking_zinb_genes_never_exceed_max_iter(max_iter, monkeypatch):
    """As above for a ZINB matrix: each gene's halvings are bounded by what its own budget
    has left."""
    cycle = convergence.squarem_cycle_batch

    def worst_case(*args, backtracks, **kwargs):
        out = list(cycle(*args, backtracks=backtracks, **kwargs))
        out[2] = np.where(out[3], out[2], 3 + np.asarray(backtracks))
        return tuple(out)

    monkeypatch.setattr(convergence, "squarem_cycle_batch", worst_case)
    rng = np.random.default_rng(11)
    mean = rng.uniform(0.5, 5.0, 12)
    counts = rng.negative_binomial(2.0, 2.0 / (2.0 + mean), (400, 12))
    counts[rng.random(counts.shape) < 0.3] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = zinb.fit(counts, max_iter=max_iter)
    assert np.all(result.n_iter <= max_iter)


@pytest.mark.parametrize("max_iter", [1, 2, 4, 5])
def test_squarem_respects_max_iter(max_iter):
    # max_iter bounds EM-map evaluations; a SQUAREM cycle uses up to three of them.
    with pytest.warns(ConvergenceWarning):
        result = linkage.fit(max_iter=max_iter, tol=0.0, accelerate="squarem")
    assert result.n_iter == max_iter  # the cap is used in full, never exceeded


def test_plain_em_respects_max_iter():
    with pytest.warns(ConvergenceWarning):
        result = linkage.fit(max_iter=4, tol=0.0, accelerate=None)
    assert result.n_iter == 4
    assert len(result.loglik_history) == 5


def test_squarem_cycle_batch_bounds_each_fits_backtracking_on_its_own():
    """With one bound on the halvings per fit (the driver's: what each fit's budget has
    left), each row of the line v -> ρ v takes the path it takes alone with its bound.
    Every row's first α = 1 / (1 − ρ) leaves the domain: at ρ = 0.9 the third halving
    (α = 2.125) is accepted, at ρ = 0.8 the fourth (α = 1.25)."""
    limits = np.array([0, 2, 4])
    options = {"in_domain": linear_domain, "tol": 1e-8, "xtol": None}
    v, step_max, rho = np.ones((3, 2)), np.full(3, 1000.0), np.full(3, np.inf)
    together = convergence.squarem_cycle_batch(
        linear_batch, linear_objective, v, step_max, last_rho=rho, backtracks=limits, **options
    )
    for i, limit in enumerate(limits):

        def row_map(x, need, i=i):  # the EM map of row i's rate
            return LINEAR_RATES[i] * x, linear_objective(x)

        _assert_row_as_alone(
            together,
            i,
            row_map,
            linear_objective,
            v,
            step_max,
            rho,
            backtracks=int(limit),
            **options,
        )
    used = together[2]
    # Rows 0 and 1 fall back to the plain steps within their bounds; row 2 is accepted at
    # its last halving (one stabilising step): no bound shared by the rows gives both.
    np.testing.assert_array_equal(used, [2, 2, 3])
