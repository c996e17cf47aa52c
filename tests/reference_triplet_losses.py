"""Explicit-loop numpy references for the triplet family (triplet with its miners and
forms, the official HPHN + EE code, margin, SNR and quadruplet losses), written from the
papers' formulas (float64, loops over samples; no tfdml code). Random miners are checked
on the tuples they drew: these references take the tuples as input."""
import itertools

import numpy as np

import reference_expansion as ref


def triplet(x, labels, margin=0.2, mining="hard", form="hinge", metric="euclidean", normalized=True,
            temperature=0.1, embedding_scale=1.0, n=0, pairs="consecutive", pooling="anchor", average_over=None):
    """Mined triplets' ℓ summed and divided by (average_over) their number ("triplets"), the number of
    those with ℓ > 0 ("active_triplets"; default for mining "all" with the hinge form) or the number of
    ordered positive pairs |P| ("positive_pairs", EE eqs. 1/11), or not divided at all ("sum")."""
    x = ref.normalize(x) if normalized else x
    x = x * embedding_scale
    dp = ref.positive_matrix(x, metric)
    dn = ref.negative_matrix(x, labels, metric, n, normalized, pairs, pooling)
    sp = ref.positive_matrix(x, "cosine")
    sn = ref.negative_matrix(x, labels, "cosine", n, normalized, pairs, pooling)
    b = len(labels)

    def value(a, p, q):
        if form == "hinge":
            return max(dp[a, p] - dn[a, q] + margin, 0.0)
        if form == "softplus":
            return float(np.log1p(np.exp(dp[a, p] - dn[a, q])))
        logits = np.array([sp[a, p], sn[a, q]]) / temperature
        return float(-(logits[0] - np.log(np.sum(np.exp(logits)))))

    terms = []
    for a in range(b):
        pos = [j for j in range(b) if j != a and labels[j] == labels[a]]
        neg = [k for k in range(b) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "all":
            terms += [value(a, p, q) for p, q in itertools.product(pos, neg)]
            continue
        if mining == "hard":
            p = max(pos, key=lambda j: dp[a, j])
            q = min(neg, key=lambda k: dn[a, k])
        elif mining == "easy_positive_hard":
            p = min(pos, key=lambda j: dp[a, j])
            q = min(neg, key=lambda k: dn[a, k])
        elif mining == "easy_positive_semihard":
            p = min(pos, key=lambda j: dp[a, j])
            farther = [k for k in neg if dn[a, k] > dp[a, p]]
            if not farther:
                continue
            q = min(farther, key=lambda k: dn[a, k])
        else:
            raise ValueError(mining)
        terms.append(value(a, p, q))
    average = average_over or ("active_triplets" if mining == "all" and form == "hinge" else "triplets")
    if average == "positive_pairs":
        positive_pairs = sum(1 for i in range(b) for j in range(b) if i != j and labels[i] == labels[j])
        return float(np.sum(terms)) / positive_pairs if positive_pairs else 0.0
    if average == "sum":
        return float(np.sum(terms))
    if average == "active_triplets":
        terms = [v for v in terms if v > 0]
    return float(np.mean(terms)) if terms else 0.0


def official_hphn_ee(x, labels, margin, n, reduce="mean"):
    """Official EE code semantics (MXNet HPHN triplet + EE, consecutive pairs): the per-anchor losses,
    averaged ("mean") or summed ("sum": what their trainer back-propagates)."""
    x = ref.normalize(x)
    pts = [(x[i], labels[i], {i}) for i in range(len(labels))] + ref.synthetic_points(x, labels, n, True)
    terms = []
    for a in range(len(labels)):
        pos = [np.linalg.norm(x[a] - x[j]) for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        own = [p for p, _, owners in pts if a in owners]
        others = [p for p, l, _ in pts if l != labels[a]]
        if not pos or not others:
            continue
        d_an = min(np.linalg.norm(p - q) for p in own for q in others)
        terms.append(max(max(pos) - d_an + margin, 0.0))
    if reduce == "sum":
        return float(np.sum(terms))
    return float(np.mean(terms)) if terms else 0.0


def margin_loss(x, y, triplets, margin, betas, nu, normalized=True):
    """Wu et al.: Σ([d_ap − β + α]_+ + [β − d_an + α]_+) / #non-zero terms + ν Σ β over the
    given valid triplets (a, p, n, valid), β per anchor class or shared."""
    xn = ref.normalize(x) if normalized else x
    terms, active, beta_sum = 0.0, 0, 0.0
    for a, p, n, v in zip(*triplets):
        if not v:
            continue
        beta = betas[y[a]] if len(betas) > 1 else betas[0]
        pos = max(np.linalg.norm(xn[a] - xn[p]) - beta + margin, 0.0)
        neg = max(beta - np.linalg.norm(xn[a] - xn[n]) + margin, 0.0)
        terms += pos + neg
        active += int(pos > 0) + int(neg > 0)
        beta_sum += beta
    return (terms / active if active else terms) + nu * beta_sum


def snr_distance(anchor, other):
    """Yuan et al.: Var(other − anchor) / Var(anchor), variances over dimensions."""
    return float(np.var(other - anchor) / np.var(anchor))


def snr(x, labels, triplets=None, margin=0.2, embedding_reg=0.005, n=0, pairs="consecutive", pooling="anchor",
        normalized=True):
    """SNR triplet hinge on x̂ for the given triplets (a, p, q, valid, swapped), or every
    valid triplet when `triplets` is None; mean over non-zero terms; + embedding_reg · mean
    |Σ_m x̂_im|."""
    xh = ref.normalize(x) if normalized else x
    b = len(labels)
    pts = [(xh[i], labels[i], {i}) for i in range(b)]
    if n > 0:
        pts += ref.synthetic_points(xh, labels, n, True, pairs)

    def pooled(a, q):
        if n == 0:
            return snr_distance(xh[a], xh[q])
        return min(snr_distance(u, v) for u in ref.pool_points(pts, labels, a, pooling)
                   for v in ref.pool_points(pts, labels, q, pooling))

    if triplets is None:
        triplets = [(a, p, q, True, False) for a in range(b) for p in range(b) for q in range(b)
                    if p != a and labels[p] == labels[a] and labels[q] != labels[a]]
        triplets = list(zip(*triplets)) if triplets else [[]] * 5
    terms = []
    for a, p, q, valid, swapped in zip(*triplets):
        if not valid:
            continue
        d_an = snr_distance(xh[a], xh[q]) if swapped else pooled(a, q)
        value = max(snr_distance(xh[a], xh[p]) - d_an + margin, 0.0)
        if value > 0:
            terms.append(value)
    regulariser = embedding_reg * np.mean([abs(np.sum(v)) for v in xh])
    return (float(np.mean(terms)) if terms else 0.0) + regulariser


def quadruplet(x, labels, quadruplets, margin=1.0, second_margin=0.5, n=0, pairs="consecutive", pooling="anchor",
               normalized=True):
    """Chen et al. / Roth eq. 14 for given quadruplets (i, j, k, l, valid, has_l,
    swapped): mean [d_ij − d_ik + γ1]_+ + mean [d_ij − d_lk + γ2]_+."""
    xh = ref.normalize(x) if normalized else x
    d = ref.positive_matrix(xh, "euclidean")
    dn = ref.negative_matrix(xh, labels, "euclidean", n, True, pairs, pooling)
    first, second = [], []
    for i, j, k, l, valid, has_l, swapped in zip(*quadruplets):
        if not valid:
            continue
        d_ik = d[i, k] if swapped else dn[i, k]
        first.append(max(d[i, j] - d_ik + margin, 0.0))
        if has_l:
            second.append(max(d[i, j] - dn[l, k] + second_margin, 0.0))
    return (float(np.mean(first)) if first else 0.0) + (float(np.mean(second)) if second else 0.0)
