"""Plain-text table of retrieval results per tap (Vo & Hays Table 3 style)."""


def format_table(results, ks):
    """`tap | R@1 | R@2 | … | NMI` rows (percentages) from `{tap: {"recall@K": …, "nmi": …}}`."""
    header = ["tap"] + [f"R@{k}" for k in ks] + ["NMI"]
    rows = [header] + [[str(tap)] + [f"{100 * m[f'recall@{k}']:.2f}" for k in ks] + [f"{100 * m['nmi']:.2f}"]
                       for tap, m in results.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)
