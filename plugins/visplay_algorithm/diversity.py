"""The diversity penalty: BLEU-distance agglomerative clustering of questions, fast and exact.

The released code computes ``1 - sentence_bleu([q_j.split()], q_i.split(), smoothing method1)`` for every pair
i < j in Python (nltk), then clusters with scikit-learn's ``AgglomerativeClustering(metric="precomputed",
linkage="average", distance_threshold=0.5)``, which runs scipy's nearest-neighbour-chain algorithm. Here:

- BLEU: clipped n-gram matches of all pairs come from matrix products of binary "count >= k" layers
  (sum_g min(a_g, b_g) = sum_k [a_g >= k][b_g >= k]; frequent layers dense through BLAS, rare ones sparse),
  in blocks of rows; the float formula is then evaluated once per distinct integer tuple (hyp length, matches
  per order) exactly as nltk does (math.log, math.fsum, math.exp) and looked up, and the brevity penalty once
  per (hyp length, ref length). So every distance is bit-identical to nltk's.
- Clustering: scipy's nn-chain with the same tie-breaking (first index of the minimum, the chain's previous
  element preferred on ties) and the same float update ``(n_x d_xi + n_y d_yi) / (n_x + n_y)``, vectorised per
  row. The partition is the connected components of the merges whose distance is below the threshold, which
  is what scikit-learn's cut of the sorted tree gives. Labels are numbered by first member (sklearn's numbering
  differs; the partition is the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
from scipy import sparse

try:  # BLAS threads fight over shared cores for these thin products: one thread was ~20x faster here
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn; without it BLAS decides
    threadpool_limits = None

ORDERS = 4
EPSILON = 0.1  # nltk SmoothingFunction().method1 epsilon


def _one_blas_thread(n: int):
    # threadpoolctl costs a few ms per call (it scans the loaded libraries): only worth it for big products.
    if threadpool_limits is None or n < 256:
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --- BLEU ------------------------------------------------------------------------------------------------------


DENSE_MIN_DF = 24
"""Layer columns held by at least max(DENSE_MIN_DF, n / DENSE_DF_DIVISOR) sentences go through a dense BLAS
product (cost ~ n^2 per column), the rest through a sparse one (cost ~ df^2 per column)."""
DENSE_DF_DIVISOR = 16
DENSE_ALL_MAX_N = 64
"""Up to this many sentences every column is dense (no scipy.sparse overhead; one image's G questions)."""
LUT_MAX_LENGTH = 24
"""Hypotheses up to this many tokens get a dense (length + 1)^4 lookup table of BLEU values; longer ones a dict."""
BLOCK_ROWS = 256
"""Rows of the score matrix computed at a time (keeps the working set in cache)."""


def _layers(token_ids: list[list[int]], order: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Binary "sentence holds n-gram g at least k times" incidences as (rows, columns, number of columns)."""
    vocab: dict[tuple[int, ...], int] = {}
    rows: list[int] = []
    grams: list[int] = []
    for i, ids in enumerate(token_ids):
        if len(ids) < order:
            continue
        for gram in zip(*(ids[p:] for p in range(order))):
            grams.append(vocab.setdefault(gram, len(vocab)))
        rows.extend([i] * (len(ids) - order + 1))
    if not grams:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    pair = np.asarray(rows, dtype=np.int64) * len(vocab) + np.asarray(grams, dtype=np.int64)
    pair, counts = np.unique(pair, return_counts=True)
    # Layer k of n-gram g is column g * kmax + (k - 1): one 1 per (sentence, g, k <= count).
    kmax = int(counts.max())
    pair = np.repeat(pair, counts)
    layer = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pair // len(vocab), (pair % len(vocab)) * kmax + layer, len(vocab) * kmax


class _Matcher:
    """Clipped n-gram matches sum_g min(count_i(g), count_j(g)) of one order, for any block of pairs.

    Frequent layer columns are a dense float32 matrix (BLAS product; sums of 0/1 are exact in float32), rare ones
    a sparse matrix (its product is cheap because few sentences share them).
    """

    def __init__(self, n: int, rows: np.ndarray, cols: np.ndarray, width: int) -> None:
        self.n = n
        if n <= DENSE_ALL_MAX_N:
            frequent = np.ones(len(cols), dtype=bool)
        else:
            min_df = max(DENSE_MIN_DF, n // DENSE_DF_DIVISOR)
            frequent = np.bincount(cols, minlength=max(width, 1))[cols] >= min_df
        used, dense_cols = np.unique(cols[frequent], return_inverse=True)
        self.dense = np.zeros((n, len(used)), dtype=np.float32)
        self.dense[rows[frequent], dense_cols] = 1.0
        rare = ~frequent
        self.sparse = None
        if rare.any():
            self.sparse = sparse.csr_matrix((np.ones(int(rare.sum()), np.float32), (rows[rare], cols[rare])),
                                            shape=(n, width))

    def block(self, a: int, b: int, c0: int) -> np.ndarray:
        """(b - a) x (n - c0) int32 matches of rows a:b against columns c0:n."""
        out = self.dense[a:b] @ self.dense[c0:].T
        if self.sparse is not None:
            product = (self.sparse[a:b] @ self.sparse[c0:].T).tocoo()
            out[product.row, product.col] += product.data
        return out.astype(np.int32)


def _log_term(k: int, den: int) -> float:
    p = (k + EPSILON) / den if k == 0 else k / den  # method1 smoothing, then nltk's float(Fraction(k, den))
    return 0.25 * math.log(p)


def _exp_part(c: int, ks: Sequence[int]) -> float:
    """exp(fsum(w_n log p_n)) for hyp length c and matches of orders 1-4: nltk's arithmetic, term by term."""
    return math.exp(math.fsum(_log_term(k, max(1, c - n + 1)) for n, k in enumerate(ks, start=1)))


def _brevity(c: int, r: int) -> float:
    if c > r:
        return 1.0
    if c == 0:
        return 0.0
    return math.exp(1 - r / c)


class _ExpTables:
    """_exp_part values cached per hyp length: a dense table for short hypotheses, a dict for long ones."""

    def __init__(self) -> None:
        self.tables: dict[int, np.ndarray] = {}
        self.known: dict[int, dict[int, float]] = {}

    def lookup(self, c: int, ks: list[np.ndarray]) -> np.ndarray:
        base = c + 1  # every k_n <= c
        code = ks[0].astype(np.int64)
        for k in ks[1:]:
            code = code * base + k
        if c <= LUT_MAX_LENGTH:
            table = self.tables.get(c)
            if table is None:
                table = self.tables[c] = np.full(base ** ORDERS, np.nan)
            values = table[code]
            missing = np.isnan(values)
            if missing.any():
                new = np.unique(code[missing])
                table[new] = [_exp_part(c, _unpack(int(x), base)) for x in new.tolist()]
                values = table[code]
            return values
        known = self.known.setdefault(c, {})
        distinct = np.unique(code)  # sorted; hashing-based, cheaper than return_inverse's sort
        values = np.empty(len(distinct), dtype=np.float64)
        for idx, x in enumerate(distinct.tolist()):
            value = known.get(x)
            if value is None:
                value = known[x] = _exp_part(c, _unpack(x, base))
            values[idx] = value
        return values[np.searchsorted(distinct, code)]


def _unpack(code: int, base: int) -> list[int]:
    digits = []
    for _ in range(ORDERS):
        code, digit = divmod(code, base)
        digits.append(digit)
    return digits[::-1]


class _Bleu:
    """Sentence BLEU (nltk, method1) of any block of (hypothesis row, reference column) pairs."""

    def __init__(self, sentences: Sequence[str]) -> None:
        vocab: dict[str, int] = {}
        token_ids = [[vocab.setdefault(t, len(vocab)) for t in s.split()] for s in sentences]
        self.n = len(token_ids)
        self.lengths = np.array([len(t) for t in token_ids], dtype=np.int64)
        self.matchers = [_Matcher(self.n, *_layers(token_ids, order)) for order in range(1, ORDERS + 1)]
        present = np.unique(self.lengths).tolist()
        self.bp = np.zeros((max(present, default=0) + 1,) * 2, dtype=np.float64)
        for c in present:
            for r in present:
                self.bp[c, r] = _brevity(c, r)
        self.exp = _ExpTables()

    def block(self, a: int, b: int, c0: int) -> np.ndarray:
        """Scores of hypotheses a:b against references c0:n."""
        ks = [m.block(a, b, c0) for m in self.matchers]
        out = np.zeros((b - a, self.n - c0), dtype=np.float64)
        hyp = self.lengths[a:b]
        ref = self.lengths[c0:]
        for c in np.unique(hyp).tolist():
            if c == 0:
                continue  # an empty hypothesis has no unigram match: BLEU 0
            rows = np.flatnonzero(hyp == c)
            sub = [k[rows] for k in ks]
            scores = self.bp[c, ref][None, :] * self.exp.lookup(c, sub)
            scores[sub[0] == 0] = 0.0  # nltk returns 0 when no unigram matches
            out[rows] = scores
        return out


def bleu_scores(sentences: Sequence[str]) -> np.ndarray:
    """Full matrix S with S[i, j] = sentence_bleu([s_j.split()], s_i.split(), smoothing method1), S[i, i] = 1.

    Bit-identical to nltk for every pair (hypothesis = row, reference = column).
    """
    with _one_blas_thread(len(sentences)):
        return _bleu_scores(sentences)


def _bleu_scores(sentences: Sequence[str]) -> np.ndarray:
    bleu = _Bleu(sentences)
    scores = np.vstack([bleu.block(a, min(a + BLOCK_ROWS, bleu.n), 0) for a in range(0, bleu.n, BLOCK_ROWS)]
                       or [np.zeros((0, 0))])
    np.fill_diagonal(scores, 1.0)
    return scores


def bleu_distances(sentences: Sequence[str]) -> np.ndarray:
    """The released code's symmetric distance matrix: d[i, j] = d[j, i] = 1 - BLEU(hyp s_i, ref s_j) for i < j.

    Only the upper triangle's pairs are scored (hypothesis = the lower index), block by block.
    """
    with _one_blas_thread(len(sentences)):
        return _bleu_distances(sentences)


def _bleu_distances(sentences: Sequence[str]) -> np.ndarray:
    bleu = _Bleu(sentences)
    n = bleu.n
    dist = np.zeros((n, n), dtype=np.float64)
    for a in range(0, n, BLOCK_ROWS):
        b = min(a + BLOCK_ROWS, n)
        block = 1.0 - bleu.block(a, b, a)
        square = np.triu(block[:, :b - a], 1)
        block[:, :b - a] = square + square.T
        dist[a:b, a:] = block
        dist[b:, a:b] = block[:, b - a:].T
    return dist


# --- average-linkage clustering ----------------------------------------------------------------------------------


def average_linkage_merges(dist: np.ndarray) -> list[tuple[int, int, float]]:
    """scipy's nn-chain average linkage on a symmetric distance matrix: merges (x, y, distance) in chain order.

    ``x < y`` are representative point indices as in scipy (the merged cluster keeps index ``y``). Dropped
    clusters are masked by adding +inf (``dead``) instead of rewriting their column: a strided column write
    costs ~20x a contiguous row operation, so only the merged cluster's column is written, for live rows only.
    """
    n = dist.shape[0]
    d = np.array(dist, dtype=np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    dead = np.zeros(n, dtype=np.float64)
    masked = np.empty(n, dtype=np.float64)
    size = [1] * n
    live = np.arange(n)
    chain: list[int] = []
    merges: list[tuple[int, int, float]] = []
    for _ in range(n - 1):
        if not chain:
            chain.append(int(live[0]))
        while True:
            x = chain[-1]
            row = d[x]
            np.add(row, dead, out=masked)
            i = int(masked.argmin())
            if len(chain) > 1:
                y, current = chain[-2], row[chain[-2]]
                if masked[i] < current:  # strictly smaller, else the chain's previous element (scipy's rule)
                    y, current = i, masked[i]
            else:
                y, current = i, masked[i]
            if len(chain) > 1 and y == chain[-2]:
                break
            chain.append(y)
        del chain[-2:]
        x, y = min(x, y), max(x, y)
        nx, ny = size[x], size[y]
        merges.append((x, y, float(current)))
        size[x], size[y] = 0, nx + ny
        dead[x] = np.inf
        live = live[live != x]
        new = (nx * d[x] + ny * d[y]) / (nx + ny)  # scipy's _average, same float operations
        d[y] = new
        d[live, y] = new[live]
    return merges


def threshold_partition(n: int, merges: list[tuple[int, int, float]], threshold: float) -> np.ndarray:
    """Cluster labels (numbered by first member) after the merges whose distance is below ``threshold``."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for x, y, distance in merges:
        if distance < threshold:
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    labels = np.empty(n, dtype=np.int64)
    numbering: dict[int, int] = {}
    for i in range(n):
        labels[i] = numbering.setdefault(find(i), len(numbering))
    return labels


def cluster_questions(questions: Sequence[str], threshold: float = 0.5) -> np.ndarray:
    """Labels of the BLEU-distance average-linkage clustering (the released code's clustering, exact)."""
    n = len(questions)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    return threshold_partition(n, average_linkage_merges(bleu_distances(questions)), threshold)


def cluster_shares(questions: Sequence[str], threshold: float = 0.5) -> list[float]:
    """|C_k| / N for each question's cluster C_k (the diversity penalty before lambda)."""
    labels = cluster_questions(questions, threshold)
    if len(labels) == 0:
        return []
    sizes = np.bincount(labels)
    return (sizes[labels] / len(labels)).tolist()
