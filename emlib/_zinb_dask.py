"""``zinb.fit`` on a dask array: each block of genes a task on a dask.distributed cluster.

Every gene's fit depends on that gene's counts alone (and on the size factors), so a
cells × genes matrix chunked by genes is fitted block by block, each block exactly as
:func:`emlib.zinb.fit` fits an in-memory matrix, and the per-gene results are put back
together in gene order. dask is imported only here, only when a dask array is given.
"""

from __future__ import annotations

import re

import numpy as np

from emlib import zinb


def is_dask_array(data) -> bool:
    """Whether ``data`` is a dask array (checked without importing dask)."""
    return type(data).__module__.split(".")[:2] == ["dask", "array"]


def _fit_block(block, offset, size_factors, init, options):
    """One task: the fit of one block of genes, with its standard errors."""
    try:
        d = zinb._prepare(block, size_factors, empty_genes=True)
    except ValueError as err:  # name the gene of the whole matrix, not of the block
        message = re.sub(r"gene (\d+)", lambda m: f"gene {int(m[1]) + offset}", str(err))
        raise ValueError(message) from None
    arrays = zinb._fit_genes(d, init, *options)
    mu, theta, pi = (arrays[k] for k in zinb.PARAM_NAMES)
    se = zinb._standard_errors_per_gene(
        d, mu, theta, pi, arrays["converged"], arrays["status"].astype(str)
    )
    return offset, arrays, se


class _DaskGene:
    """Gene g's counts read back from the dask array, prepared as a one-gene fit's data."""

    def __init__(self, data, size_factors):
        self.data, self.size_factors = data, size_factors

    def __call__(self, g: int):
        column = self.data[:, g].compute()
        column = column.toarray() if hasattr(column, "toarray") else np.asarray(column)
        return zinb._prepare(column.reshape(-1), self.size_factors)


def _client(client, scheduler):
    """The client to run on (and whether it was opened here), or None for dask's default."""
    if client is not None and scheduler is not None:
        raise ValueError("give client= or scheduler=, not both")
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - distributed is pinned
        raise ImportError("zinb.fit on a dask array needs dask.distributed") from err
    if client is not None:
        return client, False
    if scheduler is not None:
        return distributed.Client(scheduler), True
    try:
        return distributed.get_client(), False
    except ValueError:
        return None, False


def fit(data, *, size_factors, init, tol, max_iter, accelerate, xtol, progress, client, scheduler):
    """See :func:`emlib.zinb.fit` (a dask array ``data``)."""
    import dask

    if data.ndim != 2:
        raise ValueError(
            f"ZINB counts on a dask array must be a 2-D cells × genes matrix; got {data.shape}"
        )
    n, g = data.shape
    if n * g == 0:
        raise ValueError(f"ZINB counts are empty (shape {data.shape}): at least one is needed")
    sf = None if size_factors is None else zinb._check_size_factors(size_factors, n)
    start = zinb._check_params(init, g) if init is not None else None
    if len(data.chunks[0]) > 1:  # a task holds every cell of its genes
        data = data.rechunk({0: -1})
    widths = data.chunks[1]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    options = (tol, max_iter, accelerate, xtol)
    runner, opened = _client(client, scheduler)
    try:
        sf_arg = sf if runner is None or sf is None else runner.scatter(sf, broadcast=True)
        tasks = []
        for j, block in enumerate(data.to_delayed()[0]):
            a, b = int(offsets[j]), int(offsets[j + 1])
            part = None
            if start is not None:
                part = {k: x[a:b] for k, x in zip(zinb.PARAM_NAMES, start, strict=True)}
            tasks.append(dask.delayed(_fit_block, pure=False)(block, a, sf_arg, part, options))
        with zinb._progress_bar(progress, g) as bar:
            if runner is None:
                parts = list(dask.compute(*tasks))
                if bar is not None:
                    bar.update(g)
            else:
                import distributed

                futures = runner.compute(tasks)
                parts = []
                for future in distributed.as_completed(futures):
                    parts.append(future.result())
                    if bar is not None:
                        bar.update(len(parts[-1][1]["loglik"]))
    finally:
        if opened:
            runner.close()
    parts.sort(key=lambda part: part[0])
    arrays = {
        key: np.concatenate([part[1][key] for part in parts])
        for key in ("mu", "theta", "pi", "loglik", "n_iter", "converged", "error_bound", "status")
    }
    arrays["loglik_history"] = [h for part in parts for h in part[1]["loglik_history"]]
    result = zinb._matrix_result(arrays)
    se = {k: np.concatenate([part[2][0][k] for part in parts]) for k in zinb.PARAM_NAMES}
    result._se = (se, np.concatenate([part[2][1] for part in parts]))
    result._gene_data = _DaskGene(data, sf)
    return result
