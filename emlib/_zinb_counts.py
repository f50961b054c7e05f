"""The counts of a ZINB fit: a cells × genes matrix (dense or scipy.sparse) reduced to
per-gene frequency tables, validated a chunk at a time.

Private to :mod:`emlib.zinb`, which fits them; with size factors the counts are held cell
by cell instead (:mod:`emlib._zinb_scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

#: Counts below this are tabulated per gene with one ``bincount``; larger ones are sorted.
_TABLE_WIDTH = 64
_CHUNK_ENTRIES = 1 << 20
#: The floor of the default start's θ (:func:`emlib.zinb.default_init`, with or without
#: size factors); :func:`emlib.zinb._fit_start` reads a θ on it as the mark of a very
#: sparse gene's ridge start.
_THETA_FLOOR = 0.01


@dataclass(frozen=True)
class _Data:
    """Counts as ragged entries grouped by gene: one entry per distinct (gene, count).

    ``s`` is None here: fits with size factors use :class:`emlib._zinb_scaled._Scaled`.
    """

    y: np.ndarray  # (m,) float
    mult: np.ndarray  # (m,) float, how often the entry occurs
    gene: np.ndarray  # (m,) intp, sorted
    s: np.ndarray | None  # (m,) size factor of each entry, or None for all 1
    zero: np.ndarray  # indices of the entries with y == 0
    n_genes: int
    n_cells: int
    log_factorial: np.ndarray  # (G,) Σ log y! per gene
    matrix: bool


class _SparseCounts:
    """A scipy.sparse cells × genes count matrix, read in its own format (never densified).

    CSR, CSC and COO matrices in canonical form are read where they are, their stored
    entries a chunk at a time (:data:`_CHUNK_ENTRIES`), so that validating and tabulating
    them needs memory for one chunk, not a copy of the matrix; other formats, and matrices
    with duplicate entries (which sum), are first converted to CSR. Stored zeros are zeros.
    """

    def __init__(self, matrix):
        self.matrix = matrix
        self.shape = matrix.shape
        self.n_stored = int(matrix.nnz)

    @classmethod
    def of(cls, matrix) -> _SparseCounts:
        if matrix.ndim != 2:
            raise ValueError(f"ZINB counts must be a 2-D cells × genes matrix; got {matrix.shape}")
        if matrix.shape[0] * matrix.shape[1] == 0:
            raise ValueError(
                f"ZINB counts are empty (shape {matrix.shape}): at least one is needed"
            )
        if matrix.dtype.kind not in "iuf":
            raise ValueError(f"ZINB counts must be numeric; got a sparse matrix of {matrix.dtype}")
        fmt = matrix.format
        if fmt not in ("csr", "csc", "coo") or not _canonical(matrix):
            matrix = scipy.sparse.csr_matrix(matrix)  # a copy; duplicates are summed
            matrix.sum_duplicates()
        counts = cls(matrix)
        counts._validate()
        return counts

    def _chunks(self):
        """(start, values, genes) for consecutive chunks of the stored entries."""
        m, fmt = self.matrix, self.matrix.format
        for a in range(0, self.n_stored, _CHUNK_ENTRIES):
            b = min(a + _CHUNK_ENTRIES, self.n_stored)
            if fmt == "csr":
                genes = m.indices[a:b]
            elif fmt == "coo":
                genes = m.col[a:b]
            else:  # csc: the column of each entry from indptr
                genes = np.searchsorted(m.indptr, np.arange(a, b), side="right") - 1
            yield a, m.data[a:b], genes

    def _cell_gene(self, k: int) -> tuple[int, int]:
        m, fmt = self.matrix, self.matrix.format
        if fmt == "coo":
            return int(m.row[k]), int(m.col[k])
        outer = int(np.searchsorted(m.indptr, k, side="right") - 1)
        inner = int(m.indices[k])
        return (outer, inner) if fmt == "csr" else (inner, outer)

    def _validate(self) -> None:
        for start, values, _ in self._chunks():
            if values.dtype.kind != "f":
                bad = values < 0
                if bad.any():
                    self._raise(start, values, bad, "must be counts (>= 0); found")
                continue
            for bad, what in (
                (~np.isfinite(values), "contain NaN or infinite values; found"),
                (values < 0, "must be counts (>= 0); found"),
                (values != np.round(values), "must be whole-number counts; found"),
            ):
                if bad.any():
                    self._raise(start, values, bad, what)

    def _raise(self, start, values, bad, what):
        k = int(np.flatnonzero(bad)[0])
        cell, gene = self._cell_gene(start + k)
        raise ValueError(f"ZINB counts {what} {values[k]} at cell {cell}, gene {gene}")

    def tables(self):
        """As :func:`_tables`: the distinct (gene, value) pairs, zeros included, and counts."""
        n, g = self.shape
        width = _TABLE_WIDTH + 1  # as in _tables: small values by bincount, the rest sorted
        table = np.zeros(g * width, dtype=np.int64)
        big_gene, big_value = [], []
        for _, values, genes in self._chunks():
            value = values.astype(np.int64)
            gene = genes.astype(np.int64)
            small = (value > 0) & (value < width - 1)
            table += np.bincount(gene[small] * width + value[small], minlength=g * width)
            large = value >= width - 1
            if large.any():
                big_gene.append(gene[large])
                big_value.append(value[large])
        table = table.reshape(g, width)
        positive = table.sum(axis=1)
        if big_gene:
            big_gene, big_value = np.concatenate(big_gene), np.concatenate(big_value)
            positive += np.bincount(big_gene, minlength=g)
        table[:, 0] = n - positive
        return _table_entries(table, big_gene, big_value)

    def positives_by_gene(self):
        """Each gene's positive counts and their cells (int32), in cell order; their numbers.

        The counts keep the matrix's dtype (float only per block of genes, in
        :func:`emlib._zinb_scaled._blocks`): the one copy kept is the gene-major one, a CSC
        copy as large as the matrix (a copy of a CSC matrix too: a result's later standard
        errors read it, and the caller may change the matrix in place meanwhile). Stored
        zeros are dropped.
        """
        g = self.shape[1]
        csc = self.matrix.tocsc()
        if not csc.has_sorted_indices:
            csc = csc.sorted_indices()
        data, cells, indptr = csc.data, csc.indices, csc.indptr
        stored_zeros = data == 0
        if stored_zeros.any():
            keep = ~stored_zeros
            col_count = np.diff(indptr)
            dropped = np.bincount(np.repeat(np.arange(g), col_count)[stored_zeros], minlength=g)
            indptr = np.concatenate([[0], np.cumsum(col_count - dropped)])
            data, cells = data[keep], cells[keep]
        elif csc is self.matrix:
            data, cells = data.copy(), cells.copy()
        del stored_zeros, csc
        return data, cells.astype(np.int32, copy=False), np.diff(indptr)


def _canonical(matrix) -> bool:
    """Whether a CSR, CSC or COO matrix has no duplicate entries (and CSR/CSC sorted ones)."""
    try:
        return bool(matrix.has_canonical_format)
    except AttributeError:
        return False


def _as_count_matrix(data) -> tuple[np.ndarray, bool]:
    """Validate counts (1-D, or 2-D cells × genes) without a full-size temporary."""
    if scipy.sparse.issparse(data):  # the E- and M-steps give dense arrays anyway
        data = data.toarray()
    arr = data if isinstance(data, np.ndarray) else None
    if arr is None or arr.dtype.kind not in "iuf":
        try:
            arr = np.asarray(data, dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"ZINB counts must be numeric; could not convert them to numbers ({err})"
            ) from err
    if arr.ndim not in (1, 2):
        raise ValueError(
            "ZINB counts must be a 1-D array of counts or a 2-D cells × genes matrix; got an "
            f"array of shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"ZINB counts are empty (shape {arr.shape}): at least one is needed")
    matrix = arr.ndim == 2
    arr2 = arr if matrix else arr[:, None]
    if arr2.dtype.kind in "iu":
        if arr2.dtype.kind == "i" and arr2.min() < 0:
            _raise_at(arr2, arr2 < 0, matrix, "must be counts (>= 0); found")
        return arr2, matrix
    rows = max(1, _CHUNK_ENTRIES // arr2.shape[1])
    for start in range(0, arr2.shape[0], rows):
        block = arr2[start : start + rows]
        for bad, what in (
            (~np.isfinite(block), "contain NaN or infinite values; found"),
            (block < 0, "must be counts (>= 0); found"),
            (block != np.round(block), "must be whole-number counts; found"),
        ):
            if bad.any():
                _raise_at(block, bad, matrix, what, offset=start)
    return arr2, matrix


def _raise_at(block, bad, matrix, what, offset=0):
    i, j = (int(v) for v in np.argwhere(bad)[0])
    where = f"cell {i + offset}, gene {j}" if matrix else f"index {i + offset}"
    raise ValueError(f"ZINB counts {what} {block[i, j]} at {where}")


def _check_size_factors(size_factors, n_cells: int) -> np.ndarray:
    try:
        s = np.asarray(size_factors, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"size_factors must be numeric; got {size_factors!r}") from err
    if s.shape != (n_cells,):
        raise ValueError(
            f"size_factors must have one entry per cell, shape ({n_cells},); got {s.shape}"
        )
    bad = ~np.isfinite(s) | (s <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"size_factors must be positive and finite; found {s[i]} at cell {i}")
    return s


def _tables(counts: np.ndarray):
    """Distinct (gene, value) pairs of a cells × genes count matrix and their frequencies."""
    n, g = counts.shape
    width = _TABLE_WIDTH + 1  # the last slot of each gene counts the values >= width - 1
    table = np.zeros(g * width, dtype=np.int64)
    offsets = np.arange(g, dtype=np.int64) * width
    big_gene, big_value = [], []
    rows = max(1, _CHUNK_ENTRIES // g)
    for start in range(0, n, rows):
        block = counts[start : start + rows]
        if block.dtype.kind == "f":
            block = block.astype(np.int64)
        keys = np.minimum(block, width - 1).astype(np.int64, copy=False) + offsets
        table += np.bincount(keys.ravel(), minlength=g * width)
        r, c = np.nonzero(block >= width - 1)
        big_gene.append(c)
        big_value.append(block[r, c].astype(np.int64))
    table = table.reshape(g, width)[:, :-1]
    return _table_entries(table, np.concatenate(big_gene), np.concatenate(big_value))


def _table_entries(table: np.ndarray, big_gene, big_value):
    """The (gene, value, frequency) entries of a genes × small values table of counts,
    with the large values (``big_gene``, ``big_value``: one entry per count) added,
    sorted by gene then value."""
    gene, value = np.nonzero(table)
    freq = table[gene, value]
    if len(big_gene):
        pairs, big_freq = np.unique(
            np.column_stack([big_gene, big_value]), axis=0, return_counts=True
        )
        gene = np.concatenate([gene, pairs[:, 0]])
        value = np.concatenate([value, pairs[:, 1]])
        freq = np.concatenate([freq, big_freq])
        order = np.lexsort((value, gene))
        gene, value, freq = gene[order], value[order], freq[order]
    return gene.astype(np.intp), value.astype(float), freq.astype(float)


def _check_totals(total, matrix, for_fit):
    if for_fit and np.any(total == 0):
        empty = np.flatnonzero(total == 0)
        if not matrix:
            raise ValueError(
                "every count is zero: μ → 0 and π → 1 explain the data equally well, so the "
                "ZINB parameters have no finite maximum-likelihood estimate"
            )
        shown = ", ".join(str(int(i)) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
        raise ValueError(
            f"{empty.size} gene(s) have only zero counts (genes {shown}): their ZINB "
            "parameters have no finite maximum-likelihood estimate; remove those columns"
        )


def _gene_chunks(start: np.ndarray, entries: int):
    """Consecutive gene ranges (a, b) of a segmented array, about ``entries`` entries each."""
    g = start.size - 1
    a = 0
    while a < g:
        b = int(np.searchsorted(start, start[a] + entries, side="right")) - 1
        b = min(max(b, a + 1), g)
        yield a, b
        a = b
