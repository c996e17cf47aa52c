"""Explicit-loop numpy references of the parametric miners, written from their definitions
(Yuan et al. 2017 / pytorch-metric-learning's HDCMiner, PairMarginMiner, UniformHistogramMiner,
BatchEasyHardMiner (Xuan et al. 2020), AngularMiner (Wang et al. 2017)); no tfdml code is used
here. float64 throughout; pairs are ordered (i, j), i ≠ j; slow but obvious."""
import math

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def euclidean(x):
    """B×B Euclidean distances between the L2-normalised rows of x, by loops."""
    u = unit(x)
    b = len(u)
    return np.array([[math.sqrt(sum((u[i, m] - u[j, m]) ** 2 for m in range(u.shape[1]))) for j in range(b)]
                     for i in range(b)])


def positive_pairs(labels):
    return [(i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and labels[i] == labels[j]]


def negative_pairs(labels):
    return [(i, j) for i in range(len(labels)) for j in range(len(labels)) if labels[i] != labels[j]]


def pair_margin(d, labels, pos_margin, neg_margin, neg_d=None):
    """(positive pairs with d > pos_margin, negative pairs with d < neg_margin)."""
    neg_d = d if neg_d is None else neg_d
    return ({(i, j) for i, j in positive_pairs(labels) if d[i, j] > pos_margin},
            {(i, j) for i, j in negative_pairs(labels) if neg_d[i, j] < neg_margin})


def hdc(d, labels, fraction):
    """The ⌈f·|P|⌉ farthest positive pairs and ⌈f·|N|⌉ nearest negative pairs; also the k-th
    values (for ties)."""
    out = []
    for pairs, farthest in ((positive_pairs(labels), True), (negative_pairs(labels), False)):
        k = math.ceil(fraction * len(pairs))
        ranked = sorted(pairs, key=lambda p: -d[p] if farthest else d[p])
        out.append((set(ranked[:k]), d[ranked[k - 1]] if k else None))
    return out


def batch_easy_hard(d, labels, pos_strategy, neg_strategy, pos_range=None, neg_range=None):
    """(positive pairs, negative pairs) of the batch easy/semi-hard/hard selection, per anchor."""
    b = len(labels)

    def inside(value, allowed):
        return allowed is None or allowed[0] <= value <= allowed[1]

    pos_out, neg_out = set(), set()
    for a in range(b):
        pos = [p for p in range(b) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(b) if labels[n] != labels[a]]
        pos_c = [p for p in pos if inside(d[a, p], pos_range)]
        neg_c = [n for n in neg if inside(d[a, n], neg_range)]
        p_pick = n_pick = None
        if pos_strategy == "semihard":
            if neg_c:
                n_pick = max(neg_c, key=lambda n: d[a, n]) if neg_strategy == "easy" else min(neg_c,
                                                                                            key=lambda n: d[a, n])
                closer = [p for p in pos_c if d[a, p] < d[a, n_pick]]
                if closer:
                    p_pick = max(closer, key=lambda p: d[a, p])
        else:
            if pos_strategy in ("easy", "hard") and pos_c:
                p_pick = (min if pos_strategy == "easy" else max)(pos_c, key=lambda p: d[a, p])
            if neg_strategy == "semihard":
                if p_pick is not None:
                    farther = [n for n in neg_c if d[a, n] > d[a, p_pick]]
                    if farther:
                        n_pick = min(farther, key=lambda n: d[a, n])
            elif neg_strategy in ("easy", "hard") and neg_c:
                n_pick = (max if neg_strategy == "easy" else min)(neg_c, key=lambda n: d[a, n])
        if pos_strategy == "all":
            pos_out |= {(a, p) for p in pos}
            if neg_strategy == "all":
                neg_out |= {(a, n) for n in neg}
            elif n_pick is not None:
                neg_out.add((a, n_pick))
        elif neg_strategy == "all":
            neg_out |= {(a, n) for n in neg}
            if p_pick is not None:
                pos_out.add((a, p_pick))
        elif p_pick is not None and n_pick is not None:
            pos_out.add((a, p_pick))
            neg_out.add((a, n_pick))
    return pos_out, neg_out


def triplets_of_pairs(pos, neg):
    """Every (a, p, n) with (a, p) a mined positive and (a, n) a mined negative pair."""
    return {(a, p, n) for a, p in pos for a2, n in neg if a2 == a}


def angular(x, labels, angle_degrees, normalize=True):
    """Triplets (a, p, n) of L2-normalised (or raw) points whose angle at n, arctan(‖x_a − x_p‖ /
    (2‖x_n − (x_a + x_p)/2‖)), exceeds the threshold — from the vectors, by loops."""
    u = unit(x) if normalize else x
    out = set()
    for a, p in positive_pairs(labels):
        for n in range(len(labels)):
            if labels[n] == labels[a]:
                continue
            centre = (u[a] + u[p]) / 2
            angle = math.atan2(np.linalg.norm(u[a] - u[p]), 2 * np.linalg.norm(u[n] - centre))
            if angle > math.radians(angle_degrees):
                out.add((a, p, n))
    return out


def histogram_bins(values, num_bins):
    """Bin of each value: edges lo + b(hi − lo)/K; bin b holds e_b ≤ v < e_{b+1}, the last also v = hi."""
    lo, hi = min(values), max(values)
    edges = [lo + b * (hi - lo) / num_bins for b in range(num_bins + 1)]
    bins = []
    for v in values:
        for b in range(num_bins):
            last = b == num_bins - 1
            if edges[b] <= v and (v < edges[b + 1] or (last and v <= edges[b + 1])):
                bins.append(b)
                break
    return bins, edges


def histogram_selection_probability(values, num_bins, per_bin):
    """P(a pair is drawn at least once) when `per_bin` draws with replacement are made in its bin."""
    bins, _ = histogram_bins(values, num_bins)
    counts = [bins.count(b) for b in range(num_bins)]
    return [1.0 - (1.0 - 1.0 / counts[b]) ** per_bin for b in bins], bins, counts
