"""``zinb.fit`` on a dask array, 200,000 cells × 2,000 genes (sparse), on a LocalCluster of 2.

The matrix is the model of ``bench_zinb_sparse_memory.py`` (92 % zeros, CSR with float32
data and int32 indices), simulated a block of :data:`BLOCK` genes at a time from seeds of
their own. On the cluster each block is simulated by the worker that fits it (a
``dask.array`` of CSR blocks built with ``from_delayed``), as an atlas read from chunked
storage would be: the matrix never exists in one process. In memory, the same blocks are
simulated into one CSR matrix and fitted with ``zinb.fit(X)``.

The blocks are simulated and persisted on the workers first, then ``zinb.fit`` is timed.
Reported: wall time of each fit (and of each simulation), the peak resident set size of
each worker process (before and after the fit) and of the in-memory process. Checked: the
estimates are identical.

Run: ``.venv/bin/python benchmarks/bench_zinb_dask.py``.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import scipy.sparse
from _common import check, finish, goal_line

from emlib import zinb

N_CELLS, N_GENES = 200_000, 2_000
BLOCK = 250
SEED = 20240616


def gene_params(seed: int = SEED):
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.normal(-2.3, 0.5, N_GENES))
    theta = np.exp(rng.uniform(np.log(0.3), np.log(30.0), N_GENES))
    pi = rng.uniform(0.0, 0.4, N_GENES)
    return mu, theta, pi


def simulate_block(a: int, b: int):
    """Genes a..b-1 of the matrix, as CSR (float32 data, int32 indices)."""
    mu, theta, pi = (x[a:b] for x in gene_params())
    rng = np.random.default_rng([SEED, a])
    parts = []
    for c in range(0, N_CELLS, 50_000):
        rows = min(50_000, N_CELLS - c)
        nb = rng.negative_binomial(theta, theta / (theta + mu), size=(rows, b - a))
        nb[rng.random((rows, b - a)) < pi] = 0
        parts.append(scipy.sparse.csr_matrix(nb.astype(np.float32)))
    block = scipy.sparse.vstack(parts, format="csr")
    block.indices = block.indices.astype(np.int32)
    return block


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    import dask
    import dask.array as da
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        blocks = [
            da.from_delayed(
                dask.delayed(simulate_block, pure=True)(a, min(a + BLOCK, N_GENES)),
                shape=(N_CELLS, min(a + BLOCK, N_GENES) - a),
                dtype=np.float32,
                meta=scipy.sparse.csr_matrix((0, 0), dtype=np.float32),
            )
            for a in range(0, N_GENES, BLOCK)
        ]
        start = time.perf_counter()
        data = client.persist(da.concatenate(blocks, axis=1))  # simulated on the workers
        distributed.wait(data)
        cluster_simulate = time.perf_counter() - start
        base = client.run(peak_rss)
        start = time.perf_counter()
        on_cluster = zinb.fit(data, client=client)
        cluster_seconds = time.perf_counter() - start
        workers = client.run(peak_rss)
    print(
        f"{N_CELLS:,} cells x {N_GENES:,} genes, sparse (CSR blocks of {BLOCK} genes), seed "
        f"{SEED}; LocalCluster of 2 worker processes, 1 thread each"
    )
    print(
        f"cluster: blocks simulated and persisted on the workers in {cluster_simulate:.1f} s; "
        f"zinb.fit(dask array) {cluster_seconds:.1f} s; converged "
        f"{int(on_cluster.converged.sum())}/{N_GENES}"
    )
    for address, rss in sorted(workers.items()):
        print(
            f"  worker {address}: peak RSS {rss / 1e6:.0f} MB "
            f"(after simulating its blocks, before the fit: {base[address] / 1e6:.0f} MB)"
        )

    start = time.perf_counter()
    matrix = scipy.sparse.hstack(
        [simulate_block(a, min(a + BLOCK, N_GENES)) for a in range(0, N_GENES, BLOCK)],
        format="csr",
    )
    simulate_seconds = time.perf_counter() - start
    size = matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes
    zeros = 1.0 - matrix.nnz / (N_CELLS * N_GENES)
    start = time.perf_counter()
    in_memory = zinb.fit(matrix)
    memory_seconds = time.perf_counter() - start
    print(
        f"in memory: simulation {simulate_seconds:.1f} s, CSR {size / 1e6:.0f} MB, "
        f"{zeros:.1%} zeros; zinb.fit(X) {memory_seconds:.1f} s; process peak RSS "
        f"{peak_rss() / 1e6:.0f} MB"
    )
    same = all(
        np.array_equal(on_cluster.params[k], in_memory.params[k], equal_nan=True)
        for k in zinb.PARAM_NAMES
    ) and np.array_equal(on_cluster.n_iter, in_memory.n_iter)
    check(same, "the cluster's estimates differ from the in-memory fit's")
    check(bool(in_memory.converged.all()), "the in-memory fit did not converge on every gene")
    goal_line(
        "zinb dask fit (2 workers) time / in-memory fit time (reported)",
        f"{cluster_seconds / memory_seconds:.2f}x",
        "identical estimates",
        same,
    )
    finish()


if __name__ == "__main__":
    main()
