"""The diversity penalty: BLEU-distance agglomerative clustering of questions, fast and exact.

The released code computes ``1 - sentence_bleu([q_j.split()], q_i.split(), smoothing method1)`` for every pair
i < j in Python (nltk), then clusters with scikit-learn's ``AgglomerativeClustering(metric="precomputed",
linkage="average", distance_threshold=0.5)``, which runs scipy's nearest-neighbour-chain algorithm. Here:

- BLEU: clipped n-gram matches of all pairs come from matrix products of binary "count >= k" layers
  (sum_g min(a_g, b_g) = sum_k [a_g >= k][b_g >= k]; frequent layers dense through BLAS, rare ones sparse),
  in blocks of rows; the float formula is then evaluated once per distinct integer tuple (hyp length, matches
  per order) exactly as nltk does (math.log, math.fsum, math.exp) and looked up, and the brevity penalty once
  per (hyp length, ref length). So every distance is bit-identical to nltk's.
- Clustering: scipy.cluster.hierarchy's average linkage (the same nn-chain code scikit-learn calls), cut at the
  threshold as scikit-learn cuts its tree (merges strictly below it). Labels are numbered by first member
  (sklearn's numbering differs; the partition is the same).
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


def cluster_questions(questions: Sequence[str], threshold: float = 0.5) -> np.ndarray:
    """Labels of the BLEU-distance average-linkage clustering (the released code's clustering, exact).

    scipy.cluster.hierarchy.linkage(method="average") is the nn-chain algorithm scikit-learn's
    AgglomerativeClustering runs; scikit-learn's cut at ``distance_threshold`` keeps the merges strictly below it,
    which for average linkage (monotone heights) is fcluster's "distance <= t" with t the largest float below the
    threshold. Labels are renumbered by first member.
    """
    n = len(questions)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    tree = linkage(squareform(bleu_distances(questions), checks=False), method="average")
    raw = fcluster(tree, t=np.nextafter(threshold, -np.inf), criterion="distance")
    _, first = np.unique(raw, return_index=True)
    numbering = {int(label): k for k, label in enumerate(raw[np.sort(first)])}
    return np.fromiter((numbering[int(label)] for label in raw), dtype=np.int64, count=n)


def cluster_shares(questions: Sequence[str], threshold: float = 0.5) -> list[float]:
    """|C_k| / N for each question's cluster C_k (the diversity penalty before lambda)."""
    labels = cluster_questions(questions, threshold)
    if len(labels) == 0:
        return []
    sizes = np.bincount(labels)
    return (sizes[labels] / len(labels)).tolist()
