"""What a matrix fit of emlib.zinb hands back: per-gene results, a table, flags, bad input.

The oracles are emlib's own one-gene fits (a column fitted alone takes the same steps as in
the matrix fit), the finite-difference standard errors of :class:`emlib.em.EMResult`, and
the dense fit for sparse input.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import emlib
from emlib import zinb

from .test_zinb import simulate

N = 700
#: (μ, θ, π): ordinary genes, a Poisson one (θ̂ = ∞ here), one without dropouts (π̂ = 0),
#: and (column 3) a gene of zeros only.
GENES = [(2.0, 1.5, 0.3), (5.0, 3.0, 0.2), (2.5, np.inf, 0.25), None, (1.5, 1.0, 0.0)]
EMPTY = 3
#: Seeds whose samples have their maxima on those boundaries.
SEEDS = (500, 501, 503, 0, 507)


@pytest.fixture(scope="module")
def counts():
    cols = [
        np.zeros(N, dtype=np.int64) if p is None else simulate(N, *p, seed=seed)
        for seed, p in zip(SEEDS, GENES, strict=True)
    ]
    return np.column_stack(cols)


@pytest.fixture(scope="module")
def fit(counts):
    with pytest.warns(zinb.ZeroGenesWarning, match=r"1 of 5 genes have only zero counts"):
        return zinb.fit(counts)


def test_the_matrix_result_is_not_an_emresult_but_indexes_to_them(counts, fit):
    assert not isinstance(fit, emlib.EMResult)
    assert len(fit) == counts.shape[1]
    for g in (0, 1, 2, 4, -1):
        one = fit[g]
        assert isinstance(one, emlib.EMResult)
        alone = zinb.fit(counts[:, g])
        assert one.n_iter == alone.n_iter and one.converged == alone.converged
        assert one.loglik == pytest.approx(alone.loglik, rel=1e-13)
        for name in zinb.PARAM_NAMES:
            assert one.params[name] == pytest.approx(alone.params[name], rel=1e-12)
        np.testing.assert_allclose(one.loglik_history, alone.loglik_history, rtol=1e-13)
    # emlib.rate and the standard errors of one gene are those of its column fitted alone.
    assert emlib.rate(fit[0]) == pytest.approx(emlib.rate(zinb.fit(counts[:, 0])), rel=1e-6)
    assert fit[1].se["mu"] == pytest.approx(zinb.fit(counts[:, 1]).se["mu"], rel=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        fit[5]
    with pytest.raises(ValueError, match=r"gene 3 has only zero counts.*no finite"):
        fit[EMPTY]


def test_whole_matrix_result_refuses_one_fit_uses_with_a_clear_type_error(fit):
    with pytest.raises(TypeError, match=r"index a gene, result\[g\]"):
        emlib.rate(fit)
    with pytest.raises(TypeError, match="one entry per gene"):
        bool(fit.converged)
    with pytest.raises(TypeError, match="one entry per gene"):
        float(fit.loglik)
    for name in ("param_history", "packed_params", "em_map"):
        with pytest.raises(TypeError, match=rf"{name!r} is defined for one fit.*index a gene"):
            getattr(fit, name)
    with pytest.raises(TypeError, match=r"result\.table\(\)"):
        _ = fit.se
    with pytest.raises(TypeError, match="not a sequence"):
        list(fit)
    # What existing callers do with the per-gene arrays keeps working.
    assert int(fit.converged.sum()) == 4 and not fit.converged.all()
    assert np.median(fit.n_iter) > 0 and fit.n_iter.max() == max(fit.n_iter)
    assert fit.n_iter_total == fit.n_iter.sum()
    assert type(fit.error_bound[~fit.converged].tolist()) is list
    with pytest.raises(ValueError, match=r"mu must not be NaN \(genes \[3\]: genes of zeros"):
        zinb.e_step(np.ones((3, 5), dtype=int), fit.params)


def test_table_has_one_row_per_gene_with_flags_and_standard_errors(counts, fit):
    table = fit.table()
    assert isinstance(table, pd.DataFrame) and table.index.name == "gene"
    assert list(table.columns) == [
        "mu", "theta", "pi", "loglik", "converged", "n_iter", "error_bound", "status",
        "se_mu", "se_theta", "se_pi", "se_note",
    ]  # fmt: skip
    np.testing.assert_array_equal(table["loglik"], fit.loglik)
    assert table.loc[EMPTY, "status"] == zinb.STATUS_ALL_ZEROS
    assert not table.loc[EMPTY, "converged"] and table.loc[EMPTY, "n_iter"] == 0
    assert table.loc[EMPTY, ["mu", "theta", "pi", "se_mu"]].isna().all()
    assert "all zeros" in table.loc[EMPTY, "se_note"]
    assert (table.loc[[0, 1, 2, 4], "status"] == zinb.STATUS_CONVERGED).all()
    # Interior genes: the analytic information agrees with EMResult's finite differences.
    for g in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            se = fit[g].se
        for name in zinb.PARAM_NAMES:
            assert table.loc[g, f"se_{name}"] == pytest.approx(se[name], rel=1e-3)
        assert table.loc[g, "se_note"] == ""
    # Boundary genes: no standard error for the boundary parameter, and a note saying so;
    # the others hold it fixed, as EMResult.se does.
    assert np.isinf(table.loc[2, "theta"]) and np.isnan(table.loc[2, "se_theta"])
    assert "theta = inf" in table.loc[2, "se_note"]
    assert table.loc[4, "pi"] == 0.0 and np.isnan(table.loc[4, "se_pi"])
    assert "pi = 0" in table.loc[4, "se_note"]
    for g, boundary in ((2, "theta"), (4, "pi")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            se = fit[g].se
        assert any("boundary" in str(w.message) for w in caught)
        assert not any("invalid value" in str(w.message) for w in caught), "numpy at θ = ∞"
        assert np.isnan(se[boundary])
        for name in set(zinb.PARAM_NAMES) - {boundary}:
            assert table.loc[g, f"se_{name}"] == pytest.approx(se[name], rel=1e-3)
    # Every NaN standard error comes with a note.
    missing = table[["se_mu", "se_theta", "se_pi"]].isna().any(axis=1)
    assert (table.loc[missing, "se_note"] != "").all()


def test_genes_short_of_max_iter_are_flagged_in_the_table(counts):
    with pytest.warns(emlib.ConvergenceWarning, match="max_iter=3"):
        with pytest.warns(zinb.ZeroGenesWarning):
            short = zinb.fit(counts, max_iter=3)
    table = short.table()
    fitted = table.drop(index=EMPTY)
    assert (fitted["status"] == zinb.STATUS_MAX_ITER).all() and not fitted["converged"].any()
    assert fitted[["se_mu", "se_theta", "se_pi"]].isna().all().all()
    assert (fitted["se_note"] == "not converged").all()


@pytest.mark.parametrize("with_sf", [False, True])
def test_zero_genes_leave_the_other_genes_as_fitted_without_them(counts, with_sf):
    s = np.random.default_rng(4).lognormal(0.0, 0.3, N) if with_sf else None
    others = [g for g in range(counts.shape[1]) if g != EMPTY]
    without = zinb.fit(counts[:, others], size_factors=s)
    for data in (counts, scipy.sparse.csr_matrix(counts)):
        with pytest.warns(zinb.ZeroGenesWarning, match=r"genes 3\)"):
            got = zinb.fit(data, size_factors=s)
        for name in zinb.PARAM_NAMES:
            assert np.array_equal(got.params[name][others], without.params[name])
            assert np.isnan(got.params[name][EMPTY])
        assert np.array_equal(got.n_iter[others], without.n_iter)
        assert got.loglik[EMPTY] == 0.0 and got.status[EMPTY] == zinb.STATUS_ALL_ZEROS
        assert got.summary().endswith(without.summary().split(", ")[-1])


def test_a_matrix_of_zeros_only_is_flagged_gene_by_gene():
    with pytest.warns(zinb.ZeroGenesWarning, match="2 of 2 genes"):
        fit = zinb.fit(scipy.sparse.csr_matrix((4, 2), dtype=np.int64))
    assert list(fit.status) == [zinb.STATUS_ALL_ZEROS] * 2
    assert not fit.converged.any() and np.isnan(fit.params["mu"]).all()
    assert fit.table()["se_note"].str.contains("all zeros").all()


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-2.0, r"counts \(>= 0\); found -2.0 at cell 3, gene 1"),
        (2.5, r"whole-number counts; found 2.5 at cell 3, gene 1"),
        (np.nan, "NaN or infinite values; found nan at cell 3, gene 1"),
        (np.inf, "NaN or infinite values; found inf at cell 3, gene 1"),
    ],
)
def test_bad_sparse_counts_name_the_problem_and_the_entry(fmt, value, message):
    y = np.zeros((6, 4))
    y[::2] = 1.0
    y[3, 1] = value
    with pytest.raises(ValueError, match=message):
        zinb.fit(getattr(scipy.sparse, f"{fmt}_matrix")(y))
    with pytest.raises(ValueError, match=message):
        zinb.fit(y)  # the dense form says the same


def test_progress_bar_is_off_when_captured_and_on_when_asked(counts, capfd):
    zinb.fit(counts[:, :3])
    assert capfd.readouterr().err == ""
    zinb.fit(counts[:, :3], progress=True)
    err = capfd.readouterr().err
    assert "zinb.fit" in err and "3/3" in err
    zinb.fit(counts[:, :3], progress=False)
    assert capfd.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be"):
        zinb.fit(counts[:, :3], progress="yes")
