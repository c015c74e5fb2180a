"""The compiled selection passes of :mod:`.scans` and :mod:`.euclidean` (imported only where
numba is installed; module-level functions, so numba caches them on disk and they call each
other compiled).

- ``row_kth``, ``col_kth`` and ``column_minima``: the scans of :mod:`.scans` (the k-th smallest
  score per row or column, the column minima of a comparison block), one read of the block.
- ``collect``: the pairs of a score block below a per-row, a per-column or a scaled per-column
  limit, row-major, without a mask of the block or a ``nonzero`` of it: each row's tests are
  made without a branch (vectorised) into a buffer read back eight tests a word, and only a
  word with a pair in it is searched pair by pair.
- ``kth_bounds``: per row and per column of a block, an upper bound of its ``n``-th smallest
  score from the minima of LANES disjoint groups of its entries (branch-free min passes).
- ``pair_distances``: exact float64 distances of chosen pairs, cdist's bits (see there).
- ``classify_pairs``: the tests of a real x synthetic block on its selected pairs
  (:func:`.compare_pairs.classify`).
- ``triangle_bounds`` and ``triangle_collect``: the same two passes over a diagonal block of the
  real pass, scored from the lower triangle of its Gram matrix (``(|x|^2 + |y|^2) - 2 G`` in
  float32, as :func:`.euclidean.symmetric_scores`), each pair read once for both of its rows.

Selections keep NaN out (a NaN score is below no limit), as the k-th smallest scans do.
"""

from __future__ import annotations

import numba  # noqa: F401 - this module is imported only to be compiled
import numpy as np

from .backend import compiled
from .compare_pairs import COPY, COPY_OPEN, INSIDE, INSIDE_OPEN, NEAREST, RATIO

#: Groups per row (columns j with the same j % LANES) and per column (rows i % LANES).
LANES = 64


def _insert(buf, v):  # pragma: no cover - compiled
    """Insert ``v`` into the ascending ``buf`` if it is below the last (NaN never is)."""
    n = buf.shape[0]
    if v < buf[n - 1]:
        k = n - 1
        while k > 0 and buf[k - 1] > v:
            buf[k] = buf[k - 1]
            k -= 1
        buf[k] = v


def _row_kth(score, n):  # pragma: no cover - compiled
    """The ``n``-th smallest score of each row (+inf where fewer are finite)."""
    out = np.empty(score.shape[0], score.dtype)
    buf = np.empty(n, score.dtype)
    for i in range(score.shape[0]):
        buf[:] = np.inf
        for j in range(score.shape[1]):
            _insert(buf, score[i, j])
        out[i] = buf[n - 1]
    return out


def _col_kth(score, n):  # pragma: no cover - compiled
    """The ``n``-th smallest score of each column, read row by row (the block as it is)."""
    buf = np.full((n, score.shape[1]), np.inf, score.dtype)
    last = buf[n - 1]
    for i in range(score.shape[0]):
        for j in range(score.shape[1]):
            v = score[i, j]
            if v < last[j]:
                k = n - 1
                while k > 0 and buf[k - 1, j] > v:
                    buf[k, j] = buf[k - 1, j]
                    k -= 1
                buf[k, j] = v
    return last.copy()


def _column_minima(score, weight, shared):  # pragma: no cover - compiled
    """Per column, the smallest score and the smallest ``score * weight[row]`` of the shared
    rows (:func:`.scans.column_minima`)."""
    n_x, n_y = score.shape
    col_min = np.full(n_y, np.inf, score.dtype)
    q_min = np.full(n_y, np.inf, score.dtype)
    for i in range(n_x):
        row = score[i]
        for j in range(n_y):  # vectorised: no branch in the loop
            col_min[j] = min(col_min[j], row[j])
        if shared[i]:
            w = weight[i]
            for j in range(n_y):
                q_min[j] = min(q_min[j], row[j] * w)
    return col_min, q_min


def _fill(keep, row, r_lim, col_limit, w, ratio_limit):  # pragma: no cover - compiled
    for j in range(row.shape[0]):  # no branch: vectorised
        s = row[j]
        keep[j] = (s <= r_lim) | (s <= col_limit[j]) | (s * w <= ratio_limit[j])


def _collect(score, row_limit, col_limit, weight, ratio_limit, cap):  # pragma: no cover
    """(rows, cols, count): the first ``cap`` of the ``count`` pairs with ``score <=
    row_limit[row]`` or ``score <= col_limit[col]`` or ``score * weight[row] <=
    ratio_limit[col]``, row-major."""
    n_x, n_y = score.shape
    rows = np.empty(cap, np.int64)
    cols = np.empty(cap, np.int64)
    count = 0
    words = (n_y + 7) // 8
    keep = np.zeros(8 * words, np.bool_)
    packed = keep.view(np.uint64)  # eight tests a word: a branch per word, not per pair
    for i in range(n_x):
        _fill(keep, score[i], row_limit[i], col_limit, weight[i], ratio_limit)
        for q in range(words):
            if packed[q] != 0:
                for j in range(8 * q, 8 * q + 8):
                    if keep[j]:
                        if count < cap:
                            rows[count], cols[count] = i, j
                        count += 1
    return rows, cols, count


def collect(score, row_limit, col_limit, weight, ratio_limit):
    """(rows, cols), row-major, int64, of the pairs :func:`.scans.select` keeps."""
    cap = 8 * sum(score.shape) + 1024
    rows, cols, count = _collect(score, row_limit, col_limit, weight, ratio_limit, cap)
    if count > cap:  # more than room for: again, with room for all
        rows, cols, count = _collect(score, row_limit, col_limit, weight, ratio_limit, count)
    return rows[:count], cols[:count]


def _nth(values, n):  # pragma: no cover - compiled
    """The ``n``-th smallest of ``values`` (1-D), NaN never taken, +inf if fewer."""
    buf = np.full(n, np.inf, values.dtype)
    for v in values:
        _insert(buf, v)
    return buf[n - 1]


def _column_nth(values, n):  # pragma: no cover - compiled
    """Per column of ``values`` (2-D) its ``n``-th smallest, as :func:`_nth`: the ascending
    ``n`` smallest of each column updated row by row without a branch (vectorised over the
    columns): ``b[k] <- min(b[k], max(b[k - 1], v))``, written so that a NaN changes nothing."""
    buf = np.full((n, values.shape[1]), np.inf, values.dtype)
    for i in range(values.shape[0]):
        row = values[i]
        for k in range(n - 1, 0, -1):
            below, here = buf[k - 1], buf[k]
            for j in range(values.shape[1]):
                v, b = row[j], below[j]
                m = b if b >= v else v  # NaN v: NaN
                here[j] = m if m < here[j] else here[j]  # NaN m: kept
        first = buf[0]
        for j in range(values.shape[1]):
            v = row[j]
            first[j] = v if v < first[j] else first[j]
    return buf[n - 1].copy()


def _lane_minima(row, stop, lanes):  # pragma: no cover - compiled
    """``lanes[j % LANES] = min(lanes[j % LANES], row[j])`` for j < stop (NaN never taken)."""
    full = stop - stop % LANES
    for b in range(0, full, LANES):
        for lane in range(LANES):  # no branch: vectorised
            v = row[b + lane]
            lanes[lane] = v if v < lanes[lane] else lanes[lane]
    for j in range(full, stop):
        v = row[j]
        lanes[j - full] = v if v < lanes[j - full] else lanes[j - full]


def _group_minima(row, stop, group):  # pragma: no cover - compiled
    """``group[j] = min(group[j], row[j])`` for j < stop (NaN never taken)."""
    for j in range(stop):  # no branch: vectorised
        v = row[j]
        group[j] = v if v < group[j] else group[j]


def _kth_bounds(score, n):  # pragma: no cover - compiled
    """Per row the ``n``-th smallest of its LANES lane minima (the columns j % LANES), per
    column that of its LANES group minima (the rows i % LANES)."""
    n_x, n_y = score.shape
    row_bound = np.empty(n_x, score.dtype)
    lanes = np.empty(LANES, score.dtype)
    groups = np.full((LANES, n_y), np.inf, score.dtype)
    for i in range(n_x):
        lanes[:] = np.inf
        _lane_minima(score[i], n_y, lanes)
        _group_minima(score[i], n_y, groups[i % LANES])
        row_bound[i] = _nth(lanes, n)
    return row_bound, _column_nth(groups, n)


def _triangle_row(gram_lower, norms32, r, out):  # pragma: no cover - compiled
    """``out[c]`` = the score of (r, c) for c <= r, as :func:`.euclidean.symmetric_scores`."""
    two, nr, g = np.float32(2.0), norms32[r], gram_lower[r]
    for c in range(r + 1):  # no branch: vectorised
        out[c] = (nr + norms32[c]) - two * g[c]


def _triangle_bounds(gram_lower, norms32, n):  # pragma: no cover - compiled
    """Per row i of a diagonal block, an upper bound of its ``n``-th smallest score: the
    ``n``-th smallest of the lane minima of its pairs (i, c <= i) and of the group minima of
    its pairs (r > i, i), disjoint groups of the row's entries."""
    nb = norms32.shape[0]
    lanes = np.full((nb, LANES), np.inf, np.float32)
    groups = np.full((LANES, nb), np.inf, np.float32)
    scores = np.empty(nb, np.float32)
    for r in range(nb):
        _triangle_row(gram_lower, norms32, r, scores)
        _lane_minima(scores, r + 1, lanes[r])
        _group_minima(scores, r, groups[r % LANES])
    bound = np.empty(nb, np.float32)
    both = np.empty(2 * LANES, np.float32)
    for i in range(nb):
        both[:LANES] = lanes[i]
        both[LANES:] = groups[:, i]
        bound[i] = _nth(both, n)
    return bound


def _triangle_fill(keep, scores, stop, r_lim, limit):  # pragma: no cover - compiled
    for c in range(stop):  # no branch: vectorised
        s = scores[c]
        keep[c] = (s <= r_lim) | (s <= limit[c])


def _triangle_collect(gram_lower, norms32, limit, cap):  # pragma: no cover - compiled
    """(rows, cols, scores, count): the first ``cap`` of the ``count`` pairs (i, j) of a
    diagonal block, both triangles, with ``score <= limit[i]``: each pair (r, c <= r) is
    scored once and tested for both of its rows."""
    nb = norms32.shape[0]
    rows = np.empty(cap, np.int64)
    cols = np.empty(cap, np.int64)
    values = np.empty(cap, np.float32)
    scores = np.empty(nb, np.float32)
    keep = np.zeros(8 * ((nb + 7) // 8), np.bool_)
    packed = keep.view(np.uint64)
    count = 0
    for r in range(nb):
        _triangle_row(gram_lower, norms32, r, scores)
        r_lim = limit[r]
        _triangle_fill(keep, scores, r + 1, r_lim, limit)
        for q in range(r // 8 + 1):
            if packed[q] != 0:
                for c in range(8 * q, min(8 * q + 8, r + 1)):
                    if keep[c]:
                        s = scores[c]
                        if s <= r_lim:
                            if count < cap:
                                rows[count], cols[count], values[count] = r, c, s
                            count += 1
                        if c != r and s <= limit[c]:
                            if count < cap:
                                rows[count], cols[count], values[count] = c, r, s
                            count += 1
    return rows, cols, values, count


def triangle_collect(gram_lower, norms32, limit):
    """(rows, cols, scores) of the pairs (i, j) of a diagonal block, both triangles, with
    ``score <= limit[i]`` (see :func:`_triangle_collect`)."""
    cap = 16 * len(norms32) + 1024
    found = _triangle_collect(gram_lower, norms32, limit, cap)
    if found[3] > cap:  # more than room for: again, with room for all
        found = _triangle_collect(gram_lower, norms32, limit, found[3])
    count = found[3]
    return found[0][:count], found[1][:count], found[2][:count]


def _squares(a, b, out):  # pragma: no cover - compiled
    """``out[k] = (float64(a[k]) - float64(b[k]))**2``: independent per element, vectorised."""
    for k in range(a.shape[0]):
        t = np.float64(a[k]) - np.float64(b[k])
        out[k] = t * t


def _pair_distances(x, y, rows, cols, out):  # pragma: no cover - compiled
    """``out[p] = sqrt(sum_k (x[rows[p], k] - y[cols[p], k])**2)`` in float64, the squares
    summed left to right with one rounding per product and per sum: cdist's value, bit for
    bit. The squares of eight pairs are made first (vectorised, each as cdist makes it), then
    summed in order in eight chains of dependent additions that overlap."""
    count, dim = rows.shape[0], x.shape[1]
    squares = np.empty((8, dim))
    eights = count - count % 8
    for p in range(0, eights, 8):
        for q in range(8):
            _squares(x[rows[p + q]], y[cols[p + q]], squares[q])
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for k in range(dim):
            s0 += squares[0, k]
            s1 += squares[1, k]
            s2 += squares[2, k]
            s3 += squares[3, k]
            s4 += squares[4, k]
            s5 += squares[5, k]
            s6 += squares[6, k]
            s7 += squares[7, k]
        out[p], out[p + 1] = np.sqrt(s0), np.sqrt(s1)
        out[p + 2], out[p + 3] = np.sqrt(s2), np.sqrt(s3)
        out[p + 4], out[p + 5] = np.sqrt(s4), np.sqrt(s5)
        out[p + 6], out[p + 7] = np.sqrt(s6), np.sqrt(s7)
    for p in range(eights, count):
        _squares(x[rows[p]], y[cols[p]], squares[0])
        total = 0.0
        for k in range(dim):
            total += squares[0, k]
        out[p] = np.sqrt(total)


def _bound(s, sq_err, dist_err, rel, squared, upper):  # pragma: no cover - compiled
    """Envelope.lower / Envelope.upper of one score, the same float64 operations."""
    x = s + sq_err if upper else s - sq_err
    root = np.sqrt(max(x, 0.0)) if squared else x
    if upper:
        return (root + dist_err) * (1.0 + rel)
    return max((root - dist_err) * (1.0 - rel), 0.0)


def _classify_pairs(  # pragma: no cover - compiled
    score, rows, cols, r_sq, r_dist, c_sq, c_dist, r_rel, c_rel, squared,
    radius_k, radius_score, copy_threshold, copy_score, column_score, shared, weight, ratio_score,
):  # fmt: skip
    n = rows.shape[0]
    state = np.zeros(n, np.uint8)
    row_lower, row_upper = np.empty(n), np.empty(n)
    col_lower, col_upper = np.empty(n), np.empty(n)
    for p in range(n):
        r, c = rows[p], cols[p]
        v = score[r, c]
        s = np.float64(v)
        rl = _bound(s, r_sq[r], r_dist[r], r_rel, squared, False)
        ru = _bound(s, r_sq[r], r_dist[r], r_rel, squared, True)
        cl = _bound(s, c_sq[c], c_dist[c], c_rel, squared, False)
        cu = _bound(s, c_sq[c], c_dist[c], c_rel, squared, True)
        row_lower[p], row_upper[p], col_lower[p], col_upper[p] = rl, ru, cl, cu
        upper, lower = min(ru, cu), max(rl, cl)
        bits = 0
        if v <= radius_score[r]:
            if upper < radius_k[r]:
                bits |= INSIDE
            elif lower < radius_k[r]:
                bits |= INSIDE_OPEN
        if v <= copy_score[r]:
            if upper < copy_threshold[r]:
                bits |= COPY
            elif lower < copy_threshold[r]:
                bits |= COPY_OPEN
        if v <= column_score[c]:
            bits |= NEAREST
        if shared[r] and v * weight[r] <= ratio_score[c]:
            bits |= RATIO
        state[p] = bits
    return state, row_lower, row_upper, col_lower, col_upper


_insert = compiled(_insert)
row_kth = compiled(_row_kth)
col_kth = compiled(_col_kth)
column_minima = compiled(_column_minima)
_nth = compiled(_nth)
_column_nth = compiled(_column_nth)
_lane_minima = compiled(_lane_minima)
_group_minima = compiled(_group_minima)
_fill = compiled(_fill)
_collect = compiled(_collect)
kth_bounds = compiled(_kth_bounds)
_triangle_row = compiled(_triangle_row)
_triangle_fill = compiled(_triangle_fill)
_triangle_collect = compiled(_triangle_collect)
triangle_bounds = compiled(_triangle_bounds)
_squares = compiled(_squares)
pair_distances = compiled(_pair_distances)
_bound = compiled(_bound)
classify_pairs = compiled(_classify_pairs)
