"""ZINB with per-cell size factors: each gene's positive counts and zeros, cell by cell,
and ℓ, its derivatives and the ECM step on them, a block of genes at a time.

Private to :mod:`emlib.zinb` (see its module docstring, "Size factors").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import gammaln

from emlib import _negbin
from emlib._zinb_counts import _CHUNK_ENTRIES, _THETA_FLOOR, _gene_chunks, _SparseCounts, _tables

#: Cells per block of genes: a block's working arrays stay in the processor's cache.
_BLOCK_ENTRIES = 1 << 17
#: exp(−A) is evaluated at A ≤ this (beyond it exp underflows, slowly, towards 0); the few
#: zeros with a larger A get log P(0) from ``logaddexp``.
_A_CLIP = 700.0


@dataclass(frozen=True)
class _PositiveCells:
    """The positive counts of a sparse matrix, gene-major, and the cell of each.

    Gene g of the :class:`_Scaled` that holds it has its ``n_pos[g]`` positives at
    ``first[g]:first[g] + n_pos[g]`` (cells increasing), so a subset of genes is a new
    ``first`` on the same arrays.
    """

    y: np.ndarray  # (P,) the counts, in the matrix's dtype
    cell: np.ndarray  # (P,) int32
    first: np.ndarray  # (G,) intp


@dataclass(frozen=True)
class _Scaled:
    """Counts with size factors: per gene, its positive counts and its zeros, cell by cell.

    With a mean :math:`s_c\\mu_g` every (cell, gene) pair is an entry of its own, but only
    through :math:`L = \\log(1 + s_c\\mu_g/\\theta_g)`; the log Γ, ψ and ψ' terms of the
    negative binomial depend on the count alone, so they are summed over each gene's table
    of distinct positive counts (``table_*``, sorted by gene). The positive counts
    (``pos_y`` with their cells' factors ``pos_s``) and the zeros (their cells' factors
    ``zero_s``) are flat arrays in gene order, gene g's entries at
    ``pos_start[g]:pos_start[g + 1]`` and ``zero_start[g]:zero_start[g + 1]``: a positive
    count costs a ``log1p`` and a few products per pass, a zero a ``log1p``, an ``exp`` and
    a ``log``, and the genes are processed a block at a time (:func:`_blocks`).

    From a scipy.sparse matrix neither the zeros nor the factors are stored (``pos_y``,
    ``pos_s`` and ``zero_s`` are None; ``sparse`` holds the positive counts as the matrix
    stores them, and their cells): one float per zero would be 8 bytes per (cell, gene)
    pair the matrix does not store, ~12 times the matrix itself at 92 % zeros. A gene's
    zero cells are the complement of its positive ones among all n cells, and their
    factors that complement of the one vector ``s``, so :func:`_blocks` rebuilds a block's
    ``pos_y``, ``pos_s`` and ``zero_s`` (genes_in_block × n_cells ≤
    :data:`_BLOCK_ENTRIES` entries) each time it visits it, and every sum over a gene's
    zeros, and every E-step share, is computed there, on the fly, as from stored arrays.
    That is

    .. math:: \\sum_{c:\\,y_c = 0} f(s_c) = \\sum_{c} f(s_c) - \\sum_{c:\\,y_c > 0} f(s_c),

    taken by leaving the positive cells' terms out rather than by subtracting their sum:
    the subtraction cancels catastrophically for the π-derivatives of log P(0),
    (1 − f(0))/P(0) and f(0)/P(0)², which at a positive cell with a large mean and π near
    0 grow like 1/f(0) (to e^700, or overflow) and swamp the zeros' own terms; and leaving
    them out costs a ``log1p``, an ``exp`` and a ``log`` per zero, not per cell plus per
    positive. It also keeps each sum, and so the fit, bit for bit that of the same matrix
    given dense. A subset of genes (:func:`_subset_scaled`) shares ``sparse``'s arrays and
    only picks their ``first`` entries: the live genes of a fit are never copied out.
    """

    pos_y: np.ndarray | None  # (P,) float; None with ``sparse``
    pos_s: np.ndarray | None  # (P,); None with ``sparse``
    sparse: _PositiveCells | None  # sparse input: the positives, per block of genes
    pos_start: np.ndarray  # (G + 1,) intp
    zero_s: np.ndarray | None  # (Z,); None with ``sparse``
    zero_start: np.ndarray  # (G + 1,) intp
    s: np.ndarray  # (n,) size factors
    table_gene: np.ndarray  # (k,) intp, sorted
    table_y: np.ndarray  # (k,) float, positive
    table_freq: np.ndarray  # (k,) float
    table_start: np.ndarray  # (G + 1,) intp
    total: np.ndarray  # (G,) Σ_c y
    n_pos: np.ndarray  # (G,) float, number of positive counts
    pos_s_sum: np.ndarray  # (G,) Σ_{c: y > 0} s_c
    y_log_s: np.ndarray  # (G,) Σ_c y log s_c
    log_factorial: np.ndarray  # (G,) Σ_c log y!
    n_genes: int
    n_cells: int
    matrix: bool
    # Only in the binned data of the coarse start (:func:`_coarse`): each entry stands for
    # ``pos_w`` (``zero_w``) cells of one gene and one bin of factors, at their mean factor
    # and mean count, with ``pos_var`` the variance of those counts.
    pos_w: np.ndarray | None = None
    zero_w: np.ndarray | None = None
    pos_var: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "pos_seg", _Seg(self.pos_start))
        object.__setattr__(self, "zero_seg", _Seg(self.zero_start))

    def pos_sum(self, x: np.ndarray) -> np.ndarray:
        """Σ over each gene's positive counts of a per-entry term."""
        return _seg_sum(x if self.pos_w is None else x * self.pos_w, self.pos_seg)

    def zero_sum(self, x: np.ndarray) -> np.ndarray:
        """Σ over each gene's zeros of a per-entry term."""
        return _seg_sum(x if self.zero_w is None else x * self.zero_w, self.zero_seg)


class _Seg:
    """Each gene's segment ``start[g]:start[g + 1]`` of a flat array, with its length."""

    __slots__ = ("count", "every", "first", "nonempty", "start")

    def __init__(self, start: np.ndarray):
        self.start = start
        self.count = np.diff(start)
        self.nonempty = self.count > 0
        self.every = bool(self.nonempty.all())
        self.first = start[:-1] if self.every else start[:-1][self.nonempty]


def _seg_sum(x: np.ndarray, seg) -> np.ndarray:
    """Σ of each gene's segment of ``x`` (0 for an empty one); ``seg`` a :class:`_Seg`."""
    if not isinstance(seg, _Seg):
        seg = _Seg(seg)
    if seg.every and x.size:
        return np.add.reduceat(x, seg.first)
    out = np.zeros(seg.count.size)
    if x.size:
        out[seg.nonempty] = np.add.reduceat(x, seg.first)
    return out


def _prepare_scaled(counts, sf: np.ndarray, matrix: bool) -> _Scaled:
    if isinstance(counts, _SparseCounts):
        gene, value, freq = counts.tables()
        stored_y, cell, pos_count = counts.positives_by_gene()
        sparse = _PositiveCells(stored_y, cell, np.cumsum(pos_count) - pos_count)
        pos_y = pos_s = zero_s = None
        n, g = counts.shape
    else:
        gene, value, freq = _tables(counts)
        n, g = counts.shape
        by_gene = np.ascontiguousarray(counts.T)  # genes × cells
        mask = by_gene > 0
        cells = np.broadcast_to(sf, by_gene.shape)
        pos_y = by_gene[mask].astype(float)
        pos_s = cells[mask]
        zero_s = cells[~mask]
        sparse = None
        pos_count = np.count_nonzero(mask, axis=1)
        del by_gene, mask
    positive = value > 0
    table_gene = gene[positive]
    pos_start = np.concatenate([[0], np.cumsum(pos_count)])
    zero_start = np.concatenate([[0], np.cumsum(n - pos_count)])
    if sparse is None:
        total = _seg_sum(pos_y, pos_start)
        pos_s_sum = _seg_sum(pos_s, pos_start)
        y_log_s = _seg_sum(pos_y * np.log(pos_s), pos_start)
    else:
        total, pos_s_sum, y_log_s = _positive_sums(sparse, pos_start, sf)
    return _Scaled(
        pos_y=pos_y,
        pos_s=pos_s,
        sparse=sparse,
        pos_start=pos_start,
        zero_s=zero_s,
        zero_start=zero_start,
        s=sf,
        table_gene=table_gene,
        table_y=value[positive],
        table_freq=freq[positive],
        table_start=np.searchsorted(table_gene, np.arange(g + 1)),
        total=total,
        n_pos=pos_count.astype(float),
        pos_s_sum=pos_s_sum,
        y_log_s=y_log_s,
        log_factorial=np.bincount(gene, weights=freq * gammaln(value + 1.0), minlength=g),
        n_genes=g,
        n_cells=n,
        matrix=matrix,
    )


def _positive_sums(sparse: _PositiveCells, pos_start, sf):
    """Σ y, Σ s_c and Σ y log s_c over each gene's positive counts, a chunk at a time.

    The same sums of the same float64 terms as the dense layout's, so equal bit for bit.
    """
    g = pos_start.size - 1
    total, s_sum, y_log_s = np.empty(g), np.empty(g), np.empty(g)
    for a, b in _gene_chunks(pos_start, _CHUNK_ENTRIES):
        p0, p1 = pos_start[a], pos_start[b]
        seg = pos_start[a : b + 1] - p0
        y = sparse.y[p0:p1].astype(float)
        total[a:b] = _seg_sum(y, seg)
        s = sf[sparse.cell[p0:p1]]
        s_sum[a:b] = _seg_sum(s, seg)
        np.log(s, out=s)
        s *= y
        y_log_s[a:b] = _seg_sum(s, seg)
    return total, s_sum, y_log_s


def _gather(start: np.ndarray, genes: np.ndarray):
    """Indices of the entries of ``genes`` in a segmented array, and the new starts."""
    count = np.diff(start)[genes]
    new_start = np.concatenate([[0], np.cumsum(count)])
    index = np.repeat(start[genes] - new_start[:-1], count) + np.arange(new_start[-1])
    return index, new_start


def _subset_scaled(d: _Scaled, genes: np.ndarray) -> _Scaled:
    table, table_start = _gather(d.table_start, genes)
    if d.sparse is None:
        pos, pos_start = _gather(d.pos_start, genes)
        zero, zero_start = _gather(d.zero_start, genes)
        entries = {"pos_y": d.pos_y[pos], "pos_s": d.pos_s[pos], "zero_s": d.zero_s[zero]}
        if d.pos_w is not None:
            entries.update(pos_w=d.pos_w[pos], zero_w=d.zero_w[zero], pos_var=d.pos_var[pos])
    else:  # no per-entry copy, nor index: the genes' positives are found from ``first``
        count = np.diff(d.pos_start)[genes]
        pos_start = np.concatenate([[0], np.cumsum(count)])
        zero_start = np.concatenate([[0], np.cumsum(d.n_cells - count)])
        entries = {"sparse": replace(d.sparse, first=d.sparse.first[genes])}
    return replace(
        d,
        **entries,
        pos_start=pos_start,
        zero_start=zero_start,
        table_gene=np.repeat(np.arange(genes.size), np.diff(table_start)),
        table_y=d.table_y[table],
        table_freq=d.table_freq[table],
        table_start=table_start,
        total=d.total[genes],
        n_pos=d.n_pos[genes],
        pos_s_sum=d.pos_s_sum[genes],
        y_log_s=d.y_log_s[genes],
        log_factorial=d.log_factorial[genes],
        n_genes=genes.size,
    )


def _blocks(d: _Scaled):
    """Slices of consecutive genes and the data of each, in the dense layout.

    Views of ``d``'s arrays; from sparse input the block's positives and factors are
    rebuilt (:func:`_block_entries`) on every visit, as none are stored.
    """
    # Entries per gene: the cells, or a coarse start's bins.
    rows = max(1, _BLOCK_ENTRIES * d.n_genes // max(int(d.pos_start[-1] + d.zero_start[-1]), 1))
    if d.n_genes <= rows and d.sparse is None:
        yield slice(0, d.n_genes), d
        return
    for a in range(0, d.n_genes, rows):
        b = min(a + rows, d.n_genes)
        p0, p1 = d.pos_start[a], d.pos_start[b]
        z0, z1 = d.zero_start[a], d.zero_start[b]
        t0, t1 = d.table_start[a], d.table_start[b]
        if d.sparse is None:
            entries = {"pos_y": d.pos_y[p0:p1], "pos_s": d.pos_s[p0:p1], "zero_s": d.zero_s[z0:z1]}
            if d.pos_w is not None:
                entries.update(
                    pos_w=d.pos_w[p0:p1], zero_w=d.zero_w[z0:z1], pos_var=d.pos_var[p0:p1]
                )
        else:
            entries = _block_entries(d, a, b)
        yield (
            slice(a, b),
            replace(
                d,
                **entries,
                pos_start=d.pos_start[a : b + 1] - p0,
                zero_start=d.zero_start[a : b + 1] - z0,
                table_gene=d.table_gene[t0:t1] - a,
                table_y=d.table_y[t0:t1],
                table_freq=d.table_freq[t0:t1],
                table_start=d.table_start[a : b + 1] - t0,
                total=d.total[a:b],
                n_pos=d.n_pos[a:b],
                pos_s_sum=d.pos_s_sum[a:b],
                y_log_s=d.y_log_s[a:b],
                log_factorial=d.log_factorial[a:b],
                n_genes=b - a,
            ),
        )


def _block_entries(d: _Scaled, a: int, b: int) -> dict:
    """Genes a:b's ``pos_y``, ``pos_s`` and ``zero_s`` (the dense layout's) from ``sparse``."""
    n, sp = d.n_cells, d.sparse
    count = np.diff(d.pos_start[a : b + 1])
    shift = sp.first[a:b] - (d.pos_start[a:b] - d.pos_start[a])
    if shift.size and np.all(shift == shift[0]):  # consecutive in ``sparse``: a slice
        where = slice(int(shift[0]), int(shift[0]) + int(d.pos_start[b] - d.pos_start[a]))
    else:
        where = np.repeat(shift, count) + np.arange(d.pos_start[b] - d.pos_start[a])
    cells = sp.cell[where]
    zero = np.ones((b - a, n), dtype=bool)
    zero[np.repeat(np.arange(b - a), count), cells] = False
    # Boolean indexing reads gene-major, cells increasing: the dense layout's order.
    return {
        "pos_y": sp.y[where].astype(float),
        "pos_s": d.s[cells],
        "zero_s": np.broadcast_to(d.s, zero.shape)[zero],
        "sparse": None,
    }


def _table_sum(d: _Scaled, values: np.ndarray) -> np.ndarray:
    return np.bincount(d.table_gene, weights=d.table_freq * values, minlength=d.n_genes)


def _per_entry(values: np.ndarray, seg: _Seg) -> np.ndarray:
    return np.repeat(values, seg.count)


class _Means:
    """Per entry of one set (positives or zeros): m = sμ, 1/θ, q = m/θ, L = log(1 + q).

    With ``theta_or_1`` also θ per entry (1 at θ = ∞, where 1/θ = q = L = 0).
    """

    def __init__(self, s, start, mu, inv_theta, theta_or_1=None):
        self.m = s * _per_entry(mu, start)
        self.inv_t = _per_entry(inv_theta, start)
        self.q = self.m * self.inv_t
        self.big_l = np.log1p(self.q)
        self.t = None if theta_or_1 is None else _per_entry(theta_or_1, start)


def _theta_parts(theta):
    finite = np.isfinite(theta)
    safe = np.where(finite, theta, 1.0)
    return finite, np.where(finite, 1.0 / safe, 0.0), safe


def _zero_terms(d: _Scaled, z: _Means, finite, pi, want_share=True, want_log=True):
    """For the zeros: A = −log f(0) (θL, or m at θ = ∞), f(0), P(0), log P(0), the share."""
    big_a = z.big_l * z.t
    for g in np.flatnonzero(~finite):  # few genes: their segments, not a mask of all zeros
        a, b = d.zero_start[g], d.zero_start[g + 1]
        big_a[a:b] = z.m[a:b]
    f0 = np.minimum(big_a, _A_CLIP)
    np.negative(f0, out=f0)
    np.exp(f0, out=f0)
    pi_e = _per_entry(pi, d.zero_seg)
    p0 = f0 * (1.0 - pi_e)
    p0 += pi_e
    log_p0 = np.log(p0) if want_log else None
    share = pi_e / p0 if want_share else None
    far = big_a > _A_CLIP
    if far.any():
        with np.errstate(divide="ignore"):
            log_pi = np.log(pi_e[far])
            exact = np.logaddexp(log_pi, np.log1p(-pi_e[far]) - big_a[far])
        if want_log:
            log_p0[far] = exact
        if want_share:
            share[far] = np.exp(log_pi - exact)
    return big_a, f0, p0, log_p0, share


def _scaled_parts(d: _Scaled, mu, theta, pi, want_share=True, want_log=True):
    """What ℓ and its derivatives share: the means of positives and zeros, the zero terms."""
    finite, inv_theta, safe = _theta_parts(theta)
    p = _Means(d.pos_s, d.pos_seg, mu, inv_theta)
    z = _Means(d.zero_s, d.zero_seg, mu, inv_theta, safe)
    return p, z, _zero_terms(d, z, finite, pi, want_share, want_log)


def _scaled_loglik_block(d: _Scaled, mu, theta, pi, want_share: bool, parts=None):
    if parts is None:
        parts = _scaled_parts(d, mu, theta, pi, want_share)
    p, _, (_, _, _, log_p0, share) = parts
    finite, _, safe = _theta_parts(theta)
    # Positives: Σ [y log m − (y + θ) L], and −Σ m at θ = ∞ (where L = 0).
    y_l = d.pos_sum(d.pos_y * p.big_l)
    sum_l = d.pos_sum(p.big_l)
    with np.errstate(divide="ignore"):
        log_keep = np.where(d.n_pos > 0, d.n_pos * np.log1p(-pi), 0.0)
    ll = (
        d.zero_sum(log_p0)
        - y_l
        - np.where(finite, safe * sum_l, mu * d.pos_s_sum)
        + _table_sum(d, _negbin.log_gamma_ratio(d.table_y, theta[d.table_gene]))
        + log_keep
        + d.total * np.log(mu)
        + d.y_log_s
        - d.log_factorial
    )
    return ll, share


def _scaled_loglik(d: _Scaled, mu, theta, pi, want_share: bool = True):
    """As :func:`emlib.zinb._loglik_and_share`; the shares are the zeros', in the
    segments of ``zero_start``.

    Only one-gene fits (the generic driver) keep such an array: a matrix fit's E-step is
    :func:`_scaled_em_map`'s, whose shares live for one block of genes.
    """
    ll = np.empty(d.n_genes)
    share = np.empty(d.zero_start[-1]) if want_share else None
    for rows, b in _blocks(d):
        ll[rows], part = _scaled_loglik_block(b, mu[rows], theta[rows], pi[rows], want_share)
        if want_share:
            share[d.zero_start[rows.start] : d.zero_start[rows.stop]] = part
    return ll, share


def _scaled_mu_block(d: _Scaled, w, mu, theta):
    """The μ maximising Σ w log f(y; sμ, θ) at fixed θ (concave in log μ).

    With u = y + θw (w = 1 on positives, 1 − share on zeros) and r = sμ/(θ + sμ) the score
    in log μ is Σ y − Σ u r, decreasing in log μ: its root by the safeguarded Newton of
    :func:`emlib._negbin.log_scale_root`. At θ = ∞ the Poisson's closed form Σ y / Σ w s.
    """
    finite, _, safe = _theta_parts(theta)
    denominator = d.pos_s_sum + _seg_sum(w * d.zero_s, d.zero_seg)
    out = d.total / np.maximum(denominator, np.finfo(float).tiny)
    if not finite.any():
        return out
    tp = _per_entry(safe, d.pos_seg)
    tz = _per_entry(safe, d.zero_seg)
    up = d.pos_y + tp
    uz = w * tz

    def score(x, live):
        mu_x = np.exp(x)
        first = np.zeros(d.n_genes)
        second = np.zeros(d.n_genes)
        for s, start, t, u in ((d.pos_s, d.pos_seg, tp, up), (d.zero_s, d.zero_seg, tz, uz)):
            m = s * _per_entry(mu_x, start)
            inv = m + t
            np.divide(1.0, inv, out=inv)
            m *= inv
            m *= u  # u r
            first += _seg_sum(m, start)
            inv *= t
            m *= inv
            second += _seg_sum(m, start)
        return d.total - first, -second

    x0 = np.log(np.where(np.isfinite(mu) & (mu > 0), mu, out))
    root = _negbin.log_scale_root(score, x0, active=finite, lower=-700.0, upper=700.0)
    return np.where(finite, np.exp(root), out)


def _scaled_theta_block(d: _Scaled, w, mu, theta):
    """The θ maximising Σ w log f(y; sμ, θ) at fixed μ; ∞ where not overdispersed.

    As :func:`emlib._negbin._conditional_theta`, with the ψ and ψ' sums over the table of
    positive counts (where w = 1).
    """
    mp = d.pos_s * _per_entry(mu, d.pos_seg)
    mz = d.zero_s * _per_entry(mu, d.zero_seg)
    wmz = w * mz
    resid = d.pos_y - mp
    resid *= resid
    resid -= d.pos_y
    excess = _seg_sum(resid, d.pos_seg) + _seg_sum(wmz * mz, d.zero_seg)
    over = excess > 0
    out = np.full(d.n_genes, np.inf)
    if not over.any():
        return out
    total_w = d.n_pos + _seg_sum(w, d.zero_seg)
    sum_wm = _seg_sum(mp, d.pos_seg) + _seg_sum(wmz, d.zero_seg)
    scale = sum_wm / np.maximum(total_w, np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        moment = np.clip(total_w * scale**2 / excess, _negbin.THETA_MIN, _negbin.THETA_MAX)
    x0 = np.log(_negbin._start_theta(theta, moment))
    # A finite warm start (the previous iterate) is near the root: the moment start would
    # cost one more pass over the cells.
    x_alt = np.where(np.isfinite(theta), x0, np.log(moment))
    cp = mp - d.pos_y  # w m − y on the positives (w = 1)

    def score(x, live):
        t = np.exp(x)
        g1 = _table_sum(d, _negbin._digamma_ratio_grouped(d.table_y, t, d.table_gene))
        h1 = _table_sum(d, _negbin._trigamma_ratio_grouped(d.table_y, t, d.table_gene))
        for m, start, c, wm, weight in (
            (mp, d.pos_seg, cp, mp, None),
            (mz, d.zero_seg, wmz, wmz, w),
        ):
            te = _per_entry(t, start)
            inv = m + te
            np.divide(1.0, inv, out=inv)
            big_l = m / te
            np.log1p(big_l, out=big_l)
            if weight is not None:
                big_l *= weight
            ci = c * inv
            g1 += _seg_sum(ci, start) - _seg_sum(big_l, start)
            ci *= inv
            inv *= wm
            h1 += _seg_sum(inv, start) / t - _seg_sum(ci, start)
        return _negbin.log_scale_derivatives(t, g1, h1)

    root = _negbin.log_scale_root(
        score, np.where(over, x0, 0.0), x_alt=np.where(over, x_alt, 0.0), active=over
    )
    out[over] = np.exp(root[over])
    return out


def _scaled_m_step_block(d: _Scaled, share, mu_old, theta_old):
    """One ECM step: π, then μ given θ, then θ given μ (each an exact conditional maximum)."""
    pi = _seg_sum(share, d.zero_seg) / d.n_cells
    w = 1.0 - share
    mu = _scaled_mu_block(d, w, mu_old, theta_old)
    theta = _scaled_theta_block(d, w, mu, theta_old)
    return mu, theta, pi


def _scaled_m_step(d: _Scaled, share, mu_old, theta_old):
    out = [np.empty(d.n_genes) for _ in range(3)]
    for rows, b in _blocks(d):
        part = share[d.zero_start[rows.start] : d.zero_start[rows.stop]]
        for whole, new in zip(
            out, _scaled_m_step_block(b, part, mu_old[rows], theta_old[rows]), strict=True
        ):
            whole[rows] = new
    return tuple(out)


def _scaled_em_map(d: _Scaled, mu, theta, pi):
    """The EM map (E-step and one ECM cycle) and ℓ, a block of genes at a time."""
    ll = np.empty(d.n_genes)
    out = [np.empty(d.n_genes) for _ in range(3)]
    for rows, b in _blocks(d):
        ll[rows], share = _scaled_loglik_block(b, mu[rows], theta[rows], pi[rows], True)
        for whole, new in zip(
            out, _scaled_m_step_block(b, share, mu[rows], theta[rows]), strict=True
        ):
            whole[rows] = new
    return (*out, ll)


def _scaled_newton_block(d: _Scaled, mu, theta, pi, parts=None):
    if parts is None:
        parts = _scaled_parts(d, mu, theta, pi, want_log=False)
    p, z, (_, f0, p0, _, share) = parts
    finite, _, t = _theta_parts(theta)
    inf = ~finite
    k = d.n_genes

    pos, zer = d.pos_sum, d.zero_sum

    # Positives (weight 1): the negative-binomial derivatives in (a, b) = (log μ, log θ),
    # with the factors θ of the b-derivatives applied per gene after summing. With
    # q = m/θ, tp = θ/(θ + m) = 1/(1 + q) and r = m/(θ + m) = q·tp (1, 0 at θ = ∞):
    # ∂a = tp(y − m), ∂aa = −tp²(m + qy), ∂b = −θ[(y − m)/(θ + m) + L],
    # ∂bb = ∂b + θ[r + tp(y − m)/(θ + m)], ∂ab = r·tp(y − m).
    y = d.pos_y
    tp = p.q + 1.0
    np.divide(1.0, tp, out=tp)
    r = p.q * tp
    resid = y - p.m
    ri = resid * p.inv_t
    ri *= tp  # (y − m)/(θ + m)
    da = tp * resid
    g_a = pos(da)
    da *= r
    h_ab = pos(da)
    curv = p.q * y
    curv += p.m
    curv *= tp
    curv *= tp
    h_aa = -pos(curv)
    sum_ri, sum_l = pos(ri), pos(p.big_l)
    ri *= tp
    b_pos = -(sum_ri + sum_l)  # ∂b / θ
    bb_pos = pos(r) + pos(ri)  # (∂bb − ∂b) / θ
    if inf.any():  # Σ (y − m)² − y, with the spread of a coarse bin's counts
        square = resid * resid if d.pos_var is None else resid * resid + d.pos_var
        dphi_pos = pos(square - y)
    # Zeros (y = 0): log f0 = −θL with ∂a = −m·tz, ∂aa = ∂a·tz, ∂b = θ(rz − L) = θe,
    # ∂bb = ∂b + θrz², ∂ab = ∂a·rz; weighted by w = 1 − share, plus share·w times
    # products of first derivatives (the derivatives of log P(0) = log(π + (1 − π) f0)).
    w = 1.0 - share
    qq = share * w
    tz = z.q + 1.0
    np.divide(1.0, tz, out=tz)
    rz = z.q * tz
    mt = z.m * tz  # −∂a
    e = rz - z.big_l  # ∂b / θ
    wmt = w * mt
    we = w * e
    qmt = qq * mt
    qe = qq * e
    g_a -= zer(wmt)
    b_zero = zer(we)
    h_aa += zer(qmt * mt) - zer(wmt * tz)
    wr = w * rz
    wr *= rz
    bb_zero = zer(wr)  # Σ w rz²
    qe_e = zer(qe * e)
    h_ab_zero = zer(qmt * e)  # Σ share·w·mt·e
    h_ab -= zer(wmt * rz)
    # π: ∂ log P0/∂π = (1 − f0)/P0; ∂² log P0/∂π∂x = −f0/P0² ∂(log f0)/∂x.
    dp = 1.0 - f0
    dp /= p0
    cross = p0 * p0
    np.divide(f0, cross, out=cross)
    with np.errstate(divide="ignore"):
        keep = 1.0 / (1.0 - pi)
    psi = _table_sum(d, _negbin._digamma_ratio_grouped(d.table_y, t, d.table_gene))
    psi1 = _table_sum(d, _negbin._trigamma_ratio_grouped(d.table_y, t, d.table_gene))
    g_b = t * (b_pos + b_zero)
    grad = np.empty((k, 3))
    hess = np.empty((k, 3, 3))
    grad[:, 0] = g_a
    grad[:, 1] = t * psi + g_b
    grad[:, 2] = zer(dp) - d.n_pos * keep
    hess[:, 0, 0] = h_aa
    hess[:, 1, 1] = t * psi + t * t * psi1 + g_b + t * (bb_pos + bb_zero) + t * t * qe_e
    hess[:, 0, 1] = hess[:, 1, 0] = h_ab - t * h_ab_zero
    hess[:, 2, 2] = -zer(dp * dp) - d.n_pos * keep * keep
    hess[:, 0, 2] = hess[:, 2, 0] = zer(cross * mt)
    hess[:, 1, 2] = hess[:, 2, 1] = -t * zer(cross * e)
    dphi = np.full(k, np.nan)
    if inf.any():
        grad[inf, 1] = 0.0
        hess[inf, 1, :] = 0.0
        hess[inf, :, 1] = 0.0
        dphi[inf] = (dphi_pos[inf] + zer(w * z.m * z.m)[inf]) / 2.0
    return grad, hess, dphi


def _scaled_newton_terms(d: _Scaled, mu, theta, pi):
    """As :func:`emlib.zinb._newton_terms`, summed over each gene's positive counts and zeros.

    On a zero the negative-binomial derivatives are weighted by the non-dropout posterior
    w = 1 − share, plus share·w times products of first derivatives (the derivatives of
    log P(0) = log(π + (1 − π) f(0))); ψ and ψ' are summed over the tables.
    """
    grad = np.empty((d.n_genes, 3))
    hess = np.empty((d.n_genes, 3, 3))
    dphi = np.empty(d.n_genes)
    for rows, b in _blocks(d):
        grad[rows], hess[rows], dphi[rows] = _scaled_newton_block(
            b, mu[rows], theta[rows], pi[rows]
        )
    return grad, hess, dphi


def _scaled_fused(d: _Scaled, mu, theta, pi):
    """ℓ and the Newton terms together (one pass over the cells for both)."""
    ll = np.empty(d.n_genes)
    grad = np.empty((d.n_genes, 3))
    hess = np.empty((d.n_genes, 3, 3))
    dphi = np.empty(d.n_genes)
    for rows, b in _blocks(d):
        args = mu[rows], theta[rows], pi[rows]
        parts = _scaled_parts(b, *args)
        ll[rows], _ = _scaled_loglik_block(b, *args, False, parts)
        grad[rows], hess[rows], dphi[rows] = _scaled_newton_block(b, *args, parts)
    return ll, grad, hess, dphi


def _scaled_moment_start(d: _Scaled, second, pi):
    """μ and θ matching E y = (1 − π)sμ and E y(y − 1) = (1 − π)s²μ²(1 + 1/θ) at a given π."""
    mu = d.total / ((1.0 - pi) * d.s.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_theta = second / ((1.0 - pi) * mu**2 * np.dot(d.s, d.s)) - 1.0
        theta = np.where(inv_theta > 0, 1.0 / inv_theta, 1e4)
    return mu, np.clip(theta, _THETA_FLOOR, 1e4)


def _scaled_default_init(d: _Scaled):
    """The moment start with size factors (see :func:`default_init`)."""
    n = d.n_cells
    second = _table_sum(d, d.table_y * (d.table_y - 1.0))  # Σ y(y − 1)
    mu, theta = _scaled_moment_start(d, second, 0.0)
    zeros = (n - d.n_pos) / n
    _, inv_theta, safe = _theta_parts(theta)
    f0 = np.empty(d.n_genes)
    for rows, b in _blocks(d):  # a block at a time: per-zero temporaries stay small
        part = 0.0
        for s, start in ((b.pos_s, b.pos_seg), (b.zero_s, b.zero_seg)):
            e = _Means(s, start, mu[rows], inv_theta[rows], safe[rows])
            part = part + _seg_sum(np.exp(-e.big_l * e.t), start) / n
        f0[rows] = part
    pi = np.clip((zeros - f0) / (1 - f0), 0.01, 0.9)
    mu, theta = _scaled_moment_start(d, second, pi)
    return mu, theta, pi


#: Bins of log s in the coarse data of the start with size factors (:func:`_coarse`).
_COARSE_BINS = 64


def _coarse(d: _Scaled) -> _Scaled:
    """``d`` with the size factors binned: per gene, one weighted entry per bin of log s.

    The cells are split into :data:`_COARSE_BINS` equal bins of log s. Within a bin, a
    gene's positive cells become one entry of weight c (their number) at their mean
    factor, with their mean count ȳ and the variance of their counts; its zero cells one
    entry at their mean factor. ℓ, its gradient and its Hessian on these data are those of
    the binned factors exactly (every term but one is linear in y; the last, Σ (y − m)² at
    θ = ∞, takes the variance), and differ from the exact ones by the spread of the factors
    within a bin (a bin is 1/64 of the range of log s): close enough to start from, at a
    cost of at most 2 × 64 entries per gene instead of one per cell. The count tables and
    the sums that do not involve the factors (Σ y, Σ log y!, ...) are those of ``d``. For
    ℓ and the Newton terms only (:func:`emlib.zinb._polish`), not for the EM map.
    """
    g, bins = d.n_genes, _COARSE_BINS
    log_s = np.log(d.s)
    low, span = float(log_s.min()), float(np.ptp(log_s))
    scale = bins / span if span > 0 else 0.0

    def bin_of(values):
        return np.minimum(((values - low) * scale).astype(np.intp), bins - 1)

    cell_bin = bin_of(log_s)
    pos_w, y_sum, y2_sum, s_sum = (np.empty((g, bins)) for _ in range(4))
    for a, b in _gene_chunks(d.pos_start, _CHUNK_ENTRIES // 4):  # small temporaries
        p0, p1 = d.pos_start[a], d.pos_start[b]
        count = np.diff(d.pos_start[a : b + 1])
        if d.sparse is None:
            y, s = d.pos_y[p0:p1], d.pos_s[p0:p1]
            where = bin_of(np.log(s))
        else:
            shift = d.sparse.first[a:b] - (d.pos_start[a:b] - p0)
            at = np.repeat(shift, count) + np.arange(p1 - p0)
            cells = d.sparse.cell[at]
            y, s = d.sparse.y[at].astype(float), d.s[cells]
            where = cell_bin[cells]
        key = np.repeat(np.arange(b - a) * bins, count) + where
        for out, weights in ((pos_w, None), (y_sum, y), (y2_sum, y * y), (s_sum, s)):
            out[a:b] = np.bincount(key, weights=weights, minlength=(b - a) * bins).reshape(
                b - a, bins
            )
    zero_w = np.bincount(cell_bin, minlength=bins) - pos_w
    # The zeros' factors: those of all the bin's cells less the positives' (sums of
    # positive numbers, so no cancellation that matters for a start).
    zero_s_sum = np.bincount(cell_bin, weights=d.s, minlength=bins) - s_sum
    has_pos, has_zero = pos_w > 0, zero_w > 0
    c, cz = pos_w[has_pos], zero_w[has_zero].astype(float)
    mean_y = y_sum[has_pos] / c
    return replace(
        d,
        pos_y=mean_y,
        pos_s=s_sum[has_pos] / c,
        sparse=None,
        pos_start=np.concatenate([[0], np.cumsum(has_pos.sum(axis=1))]),
        zero_s=zero_s_sum[has_zero] / cz,
        zero_start=np.concatenate([[0], np.cumsum(has_zero.sum(axis=1))]),
        pos_w=c,
        zero_w=cz,
        pos_var=np.maximum(y2_sum[has_pos] / c - mean_y * mean_y, 0.0),
    )
