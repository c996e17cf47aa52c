"""Explicit-loop numpy references for the pair-based losses (lifted structure, N-pair,
multi-similarity, contrastive, generalized lifted structure, angular, histogram),
written from the papers' formulas (float64, loops over samples; no tfdml code).
EE-pooled negative values come from `reference_expansion.negative_matrix`, itself a
loop over the synthetic points."""
import math

import numpy as np

import reference_expansion as ref


def lifted(x, labels, margin=1.0, n=0, pairs="consecutive", pooling="class", equation=2):
    """Mean over ordered positive pairs (i, j) of EE eq. 2,
    ½[log(Σ_k e^{m−d̂_ik} + Σ_k e^{m−d̂_jk}) + d_ij]_+², or (`equation=12`, EE eq. 12)
    [log Σ_k e^{m−d̂_ik} + d_ij]_+², k over the other classes; d̂ are EE-pooled when n > 0."""
    x = ref.normalize(x)
    d = ref.positive_matrix(x, "euclidean")
    dn = ref.negative_matrix(x, labels, "euclidean", n, True, pairs, pooling)
    b, terms = len(labels), []
    for i in range(b):
        for j in range(b):
            if i == j or labels[i] != labels[j]:
                continue
            s = sum(np.exp(margin - dn[i, k]) for k in range(b) if labels[k] != labels[i])
            if equation == 2:
                s += sum(np.exp(margin - dn[j, k]) for k in range(b) if labels[k] != labels[j])
            big_j = np.log(s) + d[i, j] if s > 0 else -np.inf
            terms.append((0.5 if equation == 2 else 1.0) * max(big_j, 0.0) ** 2)
    return float(np.mean(terms)) if terms else 0.0


def npair(x, labels, embedding_reg=0.005, n=0, pairs="consecutive", pooling="class", temperature=1.0,
          normalized=False):
    """Sohn's N-pair loss, similarities divided by `temperature` (Xuan et al.'s NCA form on unit vectors)."""
    x = ref.normalize(x) if normalized else x
    s = ref.positive_matrix(x, "dot") / temperature
    sn = ref.negative_matrix(x, labels, "dot", n, normalized, pairs, pooling) / temperature
    b, terms = len(labels), []
    for i in range(b):
        for j in range(b):
            if i == j or labels[i] != labels[j]:
                continue
            terms.append(np.log(1 + sum(np.exp(sn[i, k] - s[i, j]) for k in range(b) if labels[k] != labels[i])))
    reg = embedding_reg * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def multi_similarity(x, labels, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1, n=0, pairs="consecutive",
                     pooling="class", form="pooled", plus_one=True):
    """Wang et al. / EE eqs. 4–6 ("1 +" inside the logs; `plus_one=False`: without it, as EE eqs. 6/15 print
    it, an empty sum adding 0). With n > 0: form "paper" (EE eqs. 14–15) uses the
    pooled similarity ŝ only to select negatives (ŝ_ik + ε > min_j s_ij), keeps eq. 5's positive mining
    and the original s_ik in the loss; form "pooled" uses ŝ everywhere."""
    x = ref.normalize(x)
    s = ref.positive_matrix(x, "cosine")
    sn = ref.negative_matrix(x, labels, "cosine", n, True, pairs, pooling)
    s_loss = s if form == "paper" else sn  # negative-pair similarity of eq. 5 and of the loss
    b, total = len(labels), 0.0
    for i in range(b):
        pos = [j for j in range(b) if j != i and labels[j] == labels[i]]
        neg = [k for k in range(b) if labels[k] != labels[i]]
        min_pos = min((s[i, j] for j in pos), default=np.inf)
        max_neg = max((s_loss[i, k] for k in neg), default=-np.inf)
        kept_neg = [k for k in neg if sn[i, k] + epsilon > min_pos]
        kept_pos = [j for j in pos if s[i, j] - epsilon < max_neg]
        one = 1.0 if plus_one else 0.0
        if kept_pos or plus_one:
            total += np.log(one + sum(np.exp(-alpha * (s[i, j] - base)) for j in kept_pos)) / alpha
        if kept_neg or plus_one:
            total += np.log(one + sum(np.exp(beta * (s_loss[i, k] - base)) for k in kept_neg)) / beta
    return total / b


def contrastive(x, labels, pos_margin=0.0, neg_margin=1.0, squared=False, n=0, pairs="consecutive",
                pooling="class", reduction="mean"):
    """Hadsell et al. over every ordered pair. reduction "mean": mean of positive terms + mean of the
    non-zero negative terms; "batch": the sum of all terms divided by the batch size b."""
    x = ref.normalize(x)
    d = ref.positive_matrix(x, "euclidean")
    dn = ref.negative_matrix(x, labels, "euclidean", n, True, pairs, pooling)
    b = len(labels)
    power = 2 if squared else 1
    pos = [max(d[i, j] - pos_margin, 0) ** power for i in range(b) for j in range(b)
           if i != j and labels[i] == labels[j]]
    neg = [max(neg_margin - dn[i, k], 0) ** power for i in range(b) for k in range(b) if labels[i] != labels[k]]
    if reduction == "batch":
        return (sum(pos) + sum(neg)) / b
    neg = [v for v in neg if v > 0]
    return (float(np.mean(pos)) if pos else 0.0) + (float(np.mean(neg)) if neg else 0.0)


def contrastive_mined(x, labels, triplets, pos_margin=0.0, neg_margin=1.0, squared=False, reduction="batch", n=0,
                      pairs="consecutive", pooling="class"):
    """Roth et al. (appendix A.1) for given triplets (i, j, k, valid, swapped): with reduction "batch",
    1/b Σ over valid triplets of h([d_ij − m⁺]_+) + h([m⁻ − d_ik]_+); "mean": mean of the positive terms +
    mean of the non-zero negative terms. A ρ-swapped triplet (i, i, k) reads d_ik between original points."""
    x = ref.normalize(x)
    d = ref.positive_matrix(x, "euclidean")
    dn = ref.negative_matrix(x, labels, "euclidean", n, True, pairs, pooling)
    power = 2 if squared else 1
    pos, neg = [], []
    for i, j, k, valid, swapped in zip(*triplets):
        if not valid:
            continue
        pos.append(max(d[i, j] - pos_margin, 0.0) ** power)
        neg.append(max(neg_margin - (d[i, k] if swapped else dn[i, k]), 0.0) ** power)
    if reduction == "batch":
        return (sum(pos) + sum(neg)) / len(labels)
    neg = [v for v in neg if v > 0]
    return (float(np.mean(pos)) if pos else 0.0) + (float(np.mean(neg)) if neg else 0.0)


def generalized_lifted(x, labels, margin=1.0, embedding_reg=0.005, n=0, pairs="consecutive", pooling="class",
                       normalized=False):
    """Hermans et al. eq. 3 on raw (or, with `normalized`, unit) embeddings: mean over
    anchors with a positive of [log Σ_p exp(d_ap) + log Σ_n exp(m − d_an)]_+, plus
    embedding_reg · mean ‖x‖²."""
    x = ref.normalize(x) if normalized else x
    b = len(labels)
    d = ref.positive_matrix(x, "euclidean")
    dn = ref.negative_matrix(x, labels, "euclidean", n, False, pairs, pooling)
    terms = []
    for a in range(b):
        pos = [d[a, p] for p in range(b) if p != a and labels[p] == labels[a]]
        if not pos:
            continue
        neg = [margin - dn[a, k] for k in range(b) if labels[k] != labels[a]]
        terms.append(max(ref.log_sum_exp(pos) + ref.log_sum_exp(neg), 0.0) if neg else 0.0)
    reg = embedding_reg * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def angular(x, labels, alpha_degrees=45.0, angular_weight=2.0, embedding_reg=0.005, n=0, pairs="consecutive",
            pooling="class"):
    """Roth eq. 5: N-pair on raw x plus λ · angular (Wang et al. eq. 8) on x̂, per ordered
    positive pair, mean over those pairs; + embedding_reg · mean ‖x‖²."""
    b = len(labels)
    t2 = math.tan(math.radians(alpha_degrees)) ** 2
    xh = ref.normalize(x)
    s = ref.positive_matrix(x, "dot")
    sn = ref.negative_matrix(x, labels, "dot", n, False, pairs, pooling)
    c = ref.positive_matrix(xh, "cosine")
    cn = ref.negative_matrix(xh, labels, "cosine", n, False, pairs, pooling)
    terms = []
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            negs = [k for k in range(b) if labels[k] != labels[a]]
            npair_term = math.log(1 + sum(math.exp(sn[a, k] - s[a, p]) for k in negs))
            f = [4 * t2 * (cn[a, k] + cn[p, k]) - 2 * (1 + t2) * c[a, p] for k in negs]
            angular_term = math.log(1 + sum(math.exp(v) for v in f))
            terms.append(npair_term + angular_weight * angular_term)
    reg = embedding_reg * np.mean([np.sum(v ** 2) for v in x])
    return (float(np.mean(terms)) if terms else 0.0) + reg


def histogram(x, labels, bins=65, n=0, pairs="consecutive", pooling="class"):
    """Ustinova & Lempitsky: Σ_r h⁻_r Σ_{q≤r} h⁺_q with linear soft assignment to
    nodes t_r = −1 + rΔ, Δ = 2/(R−1), over unordered pairs i < j."""
    xh = ref.normalize(x)
    c = ref.positive_matrix(xh, "cosine")
    cn = ref.negative_matrix(xh, labels, "cosine", n, True, pairs, pooling)
    delta = 2.0 / (bins - 1)
    nodes = [-1.0 + r * delta for r in range(bins)]
    h_pos, h_neg = np.zeros(bins), np.zeros(bins)
    n_pos = n_neg = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            same = labels[i] == labels[j]
            value = min(max(c[i, j] if same else cn[i, j], -1.0), 1.0)
            for r, t in enumerate(nodes):
                weight = max(0.0, 1.0 - abs(value - t) / delta)
                if same:
                    h_pos[r] += weight
                else:
                    h_neg[r] += weight
            n_pos += same
            n_neg += not same
    if n_pos == 0 or n_neg == 0:
        return 0.0
    h_pos, h_neg = h_pos / n_pos, h_neg / n_neg
    return float(sum(h_neg[r] * sum(h_pos[q] for q in range(r + 1)) for r in range(bins)))
