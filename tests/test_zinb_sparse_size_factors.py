"""zinb.fit on a scipy.sparse matrix with size factors: no per-zero array, the dense answer.

From sparse input the zeros' size factors are not stored (8 bytes per zero would be ~12
times the matrix at 92 % zeros): each block of genes rebuilds them from the one vector
``s`` and the cells of its positive counts (see ``zinb._Scaled``). The prepared data must
hold nothing per zero, and the fit must be the dense-input fit of the same matrix, which
the oracles of ``test_zinb_size_factors`` and ``test_zinb_sparse_genes`` check.
"""

import dataclasses
import warnings

import numpy as np
import pytest
import scipy.sparse

from emlib import _zinb_scaled, convergence, zinb

from .test_zinb import ref_loglik, simulate
from .test_zinb_sparse_genes import _loglik_function, _oracle

N = 3000


def _size_factors(n=N, seed=5):
    s = np.random.default_rng(seed).lognormal(0.0, 0.6, n)
    return s / np.exp(np.mean(np.log(s)))


def _matrix(n=N, seed=3):
    """Ordinary, very sparse, single-count, all-zero and zero-free genes (cells × genes)."""
    s = _size_factors(n)
    rng = np.random.default_rng(seed)
    columns = [
        simulate(n, 0.3, 2.0, 0.3, seed=1, size_factors=s),
        simulate(n, 0.05, 0.5, 0.2, seed=2, size_factors=s),
        simulate(n, 4.0, np.inf, 0.1, seed=4, size_factors=s),  # Poisson with dropouts
        simulate(n, 30.0, 5.0, 0.0, seed=6, size_factors=s),  # probably no zero at all
    ]
    for values in ([1], [4], [1, 2, 3], [1] * 7 + [2] * 3 + [6], []):  # [] : all zeros
        y = np.zeros(n)
        y[rng.choice(n, len(values), replace=False)] = values
        columns.append(y)
    columns.append(simulate(n, 0.02, 1.0, 0.0, seed=8, size_factors=s))
    return np.column_stack(columns), s


ALL_ZEROS = 8


def _arrays(obj):
    """Every ndarray held by a prepared-data dataclass, nested ones included."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, np.ndarray):
            yield field.name, value
        elif dataclasses.is_dataclass(value):
            yield from ((f"{field.name}.{k}", v) for k, v in _arrays(value))


def _fit(data, s, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zinb.ZeroGenesWarning)
        return zinb.fit(data, size_factors=s, **options)


def test_prepared_sparse_data_hold_no_per_zero_array():
    y, s = _matrix()
    x = scipy.sparse.csr_matrix(y)
    zeros = y.size - x.nnz
    assert zeros > 3 * max(x.nnz, N)  # a per-zero array would stand out
    d = zinb._prepare(x, s, empty_genes=True)
    assert d.zero_s is None and d.pos_s is None
    largest = max(_arrays(d), key=lambda item: item[1].size)
    assert largest[1].size <= max(x.nnz, N), largest[0]
    # A subset of genes (the live genes of a fit) shares the positives, copying nothing.
    sub = zinb._subset(d, np.array([0, 3, 4, 9]))
    assert sub.sparse.y is d.sparse.y and sub.sparse.cell is d.sparse.cell


@pytest.mark.parametrize("genes", [None, [0, 2, 3, 6, 9]], ids=["all", "subset"])
def test_blocks_rebuild_the_dense_layout(genes, monkeypatch):
    """Each block's positives and zeros' factors are the dense layout's, bit for bit."""
    monkeypatch.setattr(_zinb_scaled, "_BLOCK_ENTRIES", 3 * N)  # blocks of 3 genes
    y, s = _matrix()
    dense = zinb._prepare(y, s, empty_genes=True)
    sparse = zinb._prepare(scipy.sparse.coo_matrix(y), s, empty_genes=True)
    if genes is not None:
        dense, sparse = (zinb._subset(d, np.array(genes)) for d in (dense, sparse))
    pairs = list(zip(_zinb_scaled._blocks(dense), _zinb_scaled._blocks(sparse), strict=True))
    assert len(pairs) > 1
    for (rows_d, bd), (rows_s, bs) in pairs:
        assert rows_d == rows_s
        for (name, a), (_, b) in zip(_arrays(bd), _arrays(bs), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert a.dtype == b.dtype, name


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_fit_is_the_dense_fit(fmt):
    y, s = _matrix()
    x = scipy.sparse.csr_matrix(y)
    x.data[::7] = 0.0  # stored zeros are zeros
    dense = _fit(x.toarray(), s)
    fit = _fit(x.asformat(fmt), s)
    assert fit.status[ALL_ZEROS] == zinb.STATUS_ALL_ZEROS
    keep = np.arange(y.shape[1]) != ALL_ZEROS
    np.testing.assert_array_equal(fit.status, dense.status)
    np.testing.assert_array_equal(fit.converged, dense.converged)
    assert fit.converged[keep].all()
    rel = np.abs(fit.loglik[keep] - dense.loglik[keep]) / np.abs(dense.loglik[keep])
    assert rel.max() <= 1e-9
    for k in zinb.PARAM_NAMES:
        np.testing.assert_allclose(fit.params[k][keep], dense.params[k][keep], rtol=1e-9)
    se, dense_se = fit.standard_errors()[0], dense.standard_errors()[0]
    for k in zinb.PARAM_NAMES:
        np.testing.assert_allclose(se[k], dense_se[k], rtol=1e-9)


def test_sparse_fit_in_small_blocks_is_the_dense_fit(monkeypatch):
    """Blocks of two genes: the live-gene cuts and the polish take non-consecutive genes."""
    monkeypatch.setattr(_zinb_scaled, "_BLOCK_ENTRIES", 2 * N)
    y, s = _matrix()
    dense, fit = _fit(y, s), _fit(scipy.sparse.csc_matrix(y), s)
    np.testing.assert_array_equal(fit.status, dense.status)
    np.testing.assert_array_equal(fit.n_iter, dense.n_iter)
    for k in zinb.PARAM_NAMES:
        np.testing.assert_array_equal(fit.params[k], dense.params[k])


@pytest.fixture(scope="module")
def sparse_fit():
    y, s = _matrix()
    return _fit(scipy.sparse.csr_matrix(y), s)


@pytest.mark.parametrize("g", [0, 1, 2, 6])
def test_sparse_fit_matches_the_oracle(g, sparse_fit):
    """Ordinary and very sparse genes of the sparse fit: scipy's ℓ, the direct maximum."""
    y, s = _matrix()
    gene = sparse_fit[g]
    p = gene.params
    assert gene.converged
    convergence.check_monotone(gene.loglik_history)
    assert gene.loglik == pytest.approx(ref_loglik(y[:, g], **p, size_factors=s), rel=1e-11)
    ll, mu, theta, pi = _oracle(y[:, g], s)
    assert _loglik_function(y[:, g], s)(mu, theta, pi) == pytest.approx(ll, rel=1e-12)
    assert gene.loglik >= ll - 1e-8 * abs(ll)
    assert p["mu"] == pytest.approx(mu, rel=1e-4)
    assert 1.0 - p["pi"] == pytest.approx(1.0 - pi, rel=1e-4)
    if np.isfinite(theta) and theta < 1e4:
        assert p["theta"] == pytest.approx(theta, rel=1e-3)


def test_loglik_and_default_init_of_sparse_input():
    y, s = _matrix()
    y = y[:, np.arange(y.shape[1]) != ALL_ZEROS]
    x = scipy.sparse.csr_matrix(y)
    start = zinb.default_init(x, size_factors=s)
    dense_start = zinb.default_init(y, size_factors=s)
    for k in zinb.PARAM_NAMES:
        np.testing.assert_array_equal(start[k], dense_start[k])
    params = {"mu": start["mu"] * 1.3, "theta": np.full(y.shape[1], 0.7), "pi": start["pi"]}
    ll = zinb.loglik(x, params, size_factors=s)
    np.testing.assert_array_equal(ll, zinb.loglik(y, params, size_factors=s))
    expected = [
        ref_loglik(y[:, g], params["mu"][g], 0.7, params["pi"][g], size_factors=s)
        for g in range(y.shape[1])
    ]
    np.testing.assert_allclose(ll, expected, rtol=1e-11)
