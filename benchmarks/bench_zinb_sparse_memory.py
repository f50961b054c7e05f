"""Peak memory of ``zinb.fit`` on a 50,000 cells × 2,000 genes sparse CSR matrix, 92 % zeros.

Generative model (seeded): for each gene g, log μ_g ~ N(−2.3, 0.5), θ_g log-uniform on
[0.3, 30], π_g ~ Uniform(0, 0.4); each count is a dropout (0) with probability π_g and
otherwise NB(mean μ_g, size θ_g), simulated a block of genes at a time straight into a
CSR matrix with float32 data and int32 indices (as AnnData stores ``X``). The second case
has per-cell size factors s_c, log-normal (σ = 0.5, geometric mean 1), and NB means
s_c μ_g (same parameters otherwise, so again about 92 % zeros).

Each fit (defaults; ``size_factors=s`` in the second case) runs under tracemalloc, started
after the matrix is built, so the peak is what the fit allocates on top of the matrix it is
given; numpy and scipy report their buffers to tracemalloc. The goal is a peak at most 3x
the sparse matrix's own size (``data + indices + indptr``) in both cases. The process's
peak resident set size is reported too (it includes the interpreter, the libraries and the
simulation).

Run: ``.venv/bin/python benchmarks/bench_zinb_sparse_memory.py`` (both cases), or with
``--case plain`` / ``--case size-factors`` for one, and ``--cells N`` for a smaller matrix.
"""

from __future__ import annotations

import argparse
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


def make_size_factors(n_cells: int = N_CELLS, seed: int = SEED) -> np.ndarray:
    """Log-normal size factors (σ = 0.5), scaled to geometric mean 1."""
    s = np.random.default_rng(seed + 1).lognormal(0.0, 0.5, n_cells)
    return s / np.exp(np.mean(np.log(s)))


def make_data(n_cells: int = N_CELLS, n_genes: int = N_GENES, seed: int = SEED, s=None):
    """The CSR cells × genes matrix (float32 data, int32 indices) of the docstring's model.

    ``s``: the cells' size factors (NB mean s_c μ_g), or None for none.
    """
    rng = np.random.default_rng(seed)
    mu = np.exp(rng.normal(-2.3, 0.5, n_genes))
    theta = np.exp(rng.uniform(np.log(0.3), np.log(30.0), n_genes))
    pi = rng.uniform(0.0, 0.4, n_genes)
    blocks = []
    for a in range(0, n_genes, BLOCK):
        b = min(a + BLOCK, n_genes)
        t = theta[a:b]
        m = mu[a:b] if s is None else s[:, None] * mu[None, a:b]
        nb = rng.negative_binomial(t, t / (t + m), size=(n_cells, b - a))
        nb[rng.random((n_cells, b - a)) < pi[a:b]] = 0
        blocks.append(scipy.sparse.csc_matrix(nb.astype(np.float32)))
    matrix = scipy.sparse.hstack(blocks, format="csr", dtype=np.float32)
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int32)
    return matrix


def sparse_bytes(matrix) -> int:
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def run_case(n_cells: int, size_factors: bool) -> None:
    s = make_size_factors(n_cells) if size_factors else None
    matrix = make_data(n_cells, s=s)
    size = sparse_bytes(matrix)
    zeros = 1.0 - matrix.nnz / (n_cells * N_GENES)
    name = "with size factors" if size_factors else "no size factors"
    print(
        f"{name}: {n_cells:,} cells x {N_GENES:,} genes CSR, {zeros:.1%} zeros, "
        f"{matrix.nnz:,} stored entries; data {matrix.data.dtype}, indices "
        f"{matrix.indices.dtype}: {size / 1e6:.1f} MB (data + indices + indptr), seed {SEED}"
        + (f"; size factors {s.min():.2f}-{s.max():.2f}" if size_factors else "")
    )
    check(0.91 <= zeros <= 0.93, f"the matrix has {zeros:.1%} zeros, not about 92 %")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    start = time.perf_counter()
    fit = zinb.fit(matrix, size_factors=s)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"zinb.fit(X{', size_factors=s' if size_factors else ''}): {seconds:.1f} s (under "
        f"tracemalloc), converged {int(fit.converged.sum())}/{N_GENES}; peak traced "
        f"allocation {peak / 1e6:.1f} MB; process peak RSS {rss_before / 1e6:.0f} MB before "
        f"the fit, {rss_after / 1e6:.0f} MB after"
    )
    check(bool(fit.converged.all()), f"the fit ({name}) did not converge on every gene")
    ratio = peak / size
    goal_line(
        f"zinb sparse fit peak memory / sparse matrix ({n_cells:,} x {N_GENES:,}, "
        f"92 % zeros, {name})",
        f"{ratio:.2f}x",
        f"<= {MEMORY_GOAL:g}x",
        ratio <= MEMORY_GOAL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("both", "plain", "size-factors"), default="both")
    parser.add_argument("--cells", type=int, default=N_CELLS)
    args = parser.parse_args()
    if args.case in ("both", "plain"):
        run_case(args.cells, size_factors=False)
    if args.case in ("both", "size-factors"):
        run_case(args.cells, size_factors=True)
    finish()


if __name__ == "__main__":
    main()
