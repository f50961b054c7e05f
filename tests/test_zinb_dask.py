"""zinb.fit on a dask array chunked by genes, on a dask.distributed LocalCluster of 2 workers.

The oracle is the in-memory fit of the same matrix: every gene is fitted on its own data
alone, so the block-by-block fit must give the very same estimates, bit for bit.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse

import emlib
from emlib import zinb

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

N, G = 400, 24
EMPTY = 5


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(9)
    mu = np.exp(rng.normal(0.0, 1.0, G))
    theta = np.exp(rng.uniform(np.log(0.3), np.log(30.0), G))
    pi = rng.uniform(0.0, 0.4, G)
    y = rng.negative_binomial(theta, theta / (theta + mu), size=(N, G))
    y = np.where(rng.random((N, G)) < pi, 0, y)
    y[:, EMPTY] = 0
    return y


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distributed's own start-up notices
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def fit_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zinb.ZeroGenesWarning)
        warnings.simplefilter("ignore", emlib.ConvergenceWarning)  # short runs, on purpose
        return zinb.fit(*args, **kwargs)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("with_sf", [False, True])
def test_dask_fit_is_the_in_memory_fit(client, counts, kind, with_sf):
    s = np.random.default_rng(1).lognormal(0.0, 0.4, N) if with_sf else None
    if kind == "dense":
        data = da.from_array(counts, chunks=(N // 2, 7))  # cells chunked too: rechunked
    else:
        data = da.from_array(scipy.sparse.csr_matrix(counts), chunks=(-1, 7), asarray=False)
    with pytest.warns(zinb.ZeroGenesWarning, match=r"genes 5\)"):
        got = zinb.fit(data, size_factors=s)  # the current client
    ref = fit_quietly(counts, size_factors=s)
    for name in zinb.PARAM_NAMES:
        np.testing.assert_array_equal(got.params[name], ref.params[name])
    for name in ("loglik", "n_iter", "converged", "error_bound", "status"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    for a, b in zip(got.loglik_history, ref.loglik_history, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got.table().equals(ref.table())
    # One gene's EMResult reads its column back from the dask array.
    g = int(np.flatnonzero(ref.table()["se_note"] == "")[0])  # an interior gene
    assert got[g].se == ref[g].se
    assert got[g].loglik == ref[g].loglik


def test_dask_fit_takes_client_init_and_names_bad_entries(client, counts):
    data = da.from_array(counts, chunks=(-1, 10))
    init = {"mu": np.full(G, 2.0), "theta": 1.0, "pi": 0.2}
    got = fit_quietly(data, client=client, init=init, max_iter=6)
    ref = fit_quietly(counts, init=init, max_iter=6)
    np.testing.assert_array_equal(got.params["mu"], ref.params["mu"])
    assert not got.converged.all()  # short runs say so, per gene
    bad = counts.astype(float)
    bad[3, 17] = 0.5
    with pytest.raises(ValueError, match=r"whole-number counts; found 0.5 at cell 3, gene 17"):
        zinb.fit(da.from_array(bad, chunks=(-1, 10)), client=client)
    with pytest.raises(ValueError, match="for a dask array"):
        zinb.fit(counts, client=client)
