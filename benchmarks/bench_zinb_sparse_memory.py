"""Peak memory of ``zinb.fit`` on a 50,000 cells × 2,000 genes sparse CSR matrix, 92 % zeros.

Generative model (seeded): for each gene g, log μ_g ~ N(−2.3, 0.5), θ_g log-uniform on
[0.3, 30], π_g ~ Uniform(0, 0.4); each count is a dropout (0) with probability π_g and
otherwise NB(mean μ_g, size θ_g), simulated a block of genes at a time straight into a
CSR matrix with float32 data and int32 indices (as AnnData stores ``X``).

The fit (defaults, no size factors) runs under tracemalloc, started after the matrix is
built, so the peak is what the fit allocates on top of the matrix it is given; numpy and
scipy report their buffers to tracemalloc. The goal is a peak at most 3x the sparse
matrix's own size (``data + indices + indptr``). The process's peak resident set size is
reported too (it includes the interpreter, the libraries and the simulation).

Run: ``.venv/bin/python benchmarks/bench_zinb_sparse_memory.py``.
"""

from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np
import scipy.sparse
from _common import check, finish, goal_line

from emlib import zinb

N_CELLS, N_GENES = 50_000, 2_000
SEED = 20240615
MEMORY_GOAL = 3.0
BLOCK = 100


def make_data(n_cells: int = N_CELLS, n_genes: int = N_GENES, seed: int = SEED):
    """The CSR cells × genes matrix (float32 data, int32 indices) of the docstring's model."""
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.normal(-2.3, 0.5, n_genes))
    theta = np.exp(rng.uniform(np.log(0.3), np.log(30.0), n_genes))
    pi = rng.uniform(0.0, 0.4, n_genes)
    blocks = []
    for a in range(0, n_genes, BLOCK):
        b = min(a + BLOCK, n_genes)
        t, m = theta[a:b], mu[a:b]
        nb = rng.negative_binomial(t, t / (t + m), size=(n_cells, b - a))
        nb[rng.random((n_cells, b - a)) < pi[a:b]] = 0
        blocks.append(scipy.sparse.csc_matrix(nb.astype(np.float32)))
    matrix = scipy.sparse.hstack(blocks, format="csr", dtype=np.float32)
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int32)
    return matrix


def sparse_bytes(matrix) -> int:
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def main() -> None:
    matrix = make_data()
    size = sparse_bytes(matrix)
    zeros = 1.0 - matrix.nnz / (N_CELLS * N_GENES)
    print(
        f"{N_CELLS:,} cells x {N_GENES:,} genes CSR, {zeros:.1%} zeros, {matrix.nnz:,} stored "
        f"entries; data {matrix.data.dtype}, indices {matrix.indices.dtype}: "
        f"{size / 1e6:.1f} MB (data + indices + indptr), seed {SEED}"
    )
    check(0.91 <= zeros <= 0.93, f"the matrix has {zeros:.1%} zeros, not about 92 %")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    start = time.perf_counter()
    fit = zinb.fit(matrix)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"zinb.fit(X): {seconds:.1f} s (under tracemalloc), converged "
        f"{int(fit.converged.sum())}/{N_GENES}; peak traced allocation {peak / 1e6:.1f} MB; "
        f"process peak RSS {rss_before / 1e6:.0f} MB before the fit, {rss_after / 1e6:.0f} MB "
        "after"
    )
    check(bool(fit.converged.all()), "the fit did not converge on every gene")
    ratio = peak / size
    goal_line(
        "zinb sparse fit peak memory / sparse matrix (50,000 x 2,000, 92 % zeros)",
        f"{ratio:.2f}x",
        f"<= {MEMORY_GOAL:g}x",
        ratio <= MEMORY_GOAL,
    )
    finish()


if __name__ == "__main__":
    main()
