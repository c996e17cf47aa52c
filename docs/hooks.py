"""MkDocs hooks of tfdml's documentation site (`mkdocs.yml`: `hooks: [docs/hooks.py]`).

- Every public name has a docstring: each module in `PUBLIC_MODULES` must be documented by an
  API page (`::: module`), and each of its public names (its `__all__`, or its public
  definitions when it has none) must have a docstring; a missing one is a warning, which
  `mkdocs build --strict` turns into a failure.
- "Reproducing the papers": `<!-- tfdml:configs -->` becomes the list of `configs/*.yaml`,
  grouped by paper, each with its settings and its header comment (so it never goes stale).
- Notebooks: `<!-- tfdml:notebook PATH -->` becomes the notebook's cells (Markdown cells as they
  are, code cells and their text/image outputs as code blocks and images), read as JSON.
- Formulas: `pymdownx.arithmatex` (generic mode) marks `$...$` and `$$...$$`; this hook renders
  them server-side to SVG images with matplotlib's mathtext (a TeX subset) — no JavaScript
  and no network access needed.
"""
import glob
import html
import json
import logging
import os
import re

import yaml

log = logging.getLogger("mkdocs.hooks.tfdml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The public modules; each needs an API page (`::: name`) and a docstring for every public name.
PUBLIC_MODULES = (
    "tfdml", "tfdml.expansion", "tfdml.distances", "tfdml.losses", "tfdml.models", "tfdml.data",
    "tfdml.training", "tfdml.metrics", "tfdml.analysis", "tfdml.retrieval", "tfdml.sharing",
    "tfdml.weights",
)


# ----------------------------------------------------------------------------- docstrings
def _public_names(module):
    """Names of `module` (a griffe Module) that form its public API."""
    exports = module.exports
    if exports is not None:
        # `__all__` entries griffe cannot expand (`*_LAZY_SUBMODULES`) come back as expressions.
        return [name for name in (str(e) for e in exports)
                if name in module.members and not name.startswith("_")]
    return [name for name, member in module.members.items()
            if not name.startswith("_") and not member.is_alias and not member.is_module]


def missing_docstrings(search_path=ROOT):
    """Returns `(module, name)` for each public name of `PUBLIC_MODULES` without a docstring."""
    import griffe  # mkdocstrings-python's dependency

    package = griffe.load("tfdml", search_paths=[search_path], resolve_aliases=False)
    missing = []
    for module_name in PUBLIC_MODULES:
        module = package if module_name == "tfdml" else package[module_name[len("tfdml."):]]
        if not module.docstring:
            missing.append((module_name, ""))
        for name in _public_names(module):
            member = module[name]
            if member.is_module:  # a sub-package: documented by its own page
                continue
            try:
                target = member.final_target if member.is_alias else member
            except Exception:  # an alias to another library: not tfdml's to document
                continue
            if not target.docstring:
                missing.append((module_name, name))
    return missing


def documented_modules(docs_dir):
    """Modules that the pages of `docs_dir` render with `::: module`."""
    found = set()
    for path in glob.glob(os.path.join(docs_dir, "**", "*.md"), recursive=True):
        with open(path, encoding="utf-8") as handle:
            found.update(re.findall(r"^:::\s*([\w.]+)", handle.read(), flags=re.M))
    return found


def on_pre_build(config):
    pages = documented_modules(config["docs_dir"])
    for module in PUBLIC_MODULES:
        if module not in pages:
            log.warning("public module %s has no API page (add '::: %s' to a page in docs/api/)",
                        module, module)
    for module, name in missing_docstrings():
        what = f"{module}.{name}" if name else f"module {module}"
        log.warning("public name without a docstring: %s", what)


# ----------------------------------------------------------------------------- configs
FAMILIES = (
    # (file prefix, title, paper)
    ("default", "The embedded default run",
     "tfdml's CPU-sized default: Xuan et al.'s easy-positive semi-hard triplets (NCA form) + "
     "Embedding Expansion on scikit-learn's digits"),
    ("ee_", "Embedding Expansion — Table 2",
     "Ko & Gu, *Embedding Expansion: Augmentation in Embedding Space for Deep Metric Learning*, "
     "CVPR 2020"),
    ("roth_sampler_", "Roth et al. — batch samplers (Tables 7–9)",
     "Roth et al., *Revisiting Training Strategies and Generalization Performance in Deep Metric "
     "Learning*, ICML 2020"),
    ("roth_", "Roth et al. — the loss study (Table 2)",
     "Roth et al., *Revisiting Training Strategies and Generalization Performance in Deep Metric "
     "Learning*, ICML 2020"),
    ("vo_hays_", "Vo & Hays — which layer embeds",
     "Vo & Hays, *Generalization in Metric Learning: Should the Embedding Layer be the Embedding "
     "Layer?*, WACV 2019"),
    ("xuan_", "Xuan et al. — easy-positive triplets",
     "Xuan, Stylianou & Pless, *Improved Embeddings with Easy Positive Triplet Mining*, WACV 2020"),
    ("sharing_", "Sharing Matters",
     "Milbich et al., *Sharing Matters for Generalization in Deep Metric Learning*, TPAMI 2020"),
)
_GENERATED = "# Generated by tools/paper_configs.py"


def _family(name):
    for prefix, title, paper in FAMILIES:
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return prefix
    return None


def _header(text):
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(_GENERATED):
            continue
        lines.append(line[1:].strip())
    return " ".join(lines)


def _setting(config, *keys):
    value = config
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _cell(value):
    if value is None:
        return "—"
    return str(value).replace("|", "\\|")


def _loss(config):
    loss = _setting(config, "loss", "name")
    params = _setting(config, "loss", "params") or {}
    mining = params.get("mining")
    return f"{loss} ({mining})" if mining else loss


def configs_markdown(config_dir=os.path.join(ROOT, "configs")):
    """Markdown of every config in `config_dir`, grouped by paper."""
    groups = {prefix: [] for prefix, _, _ in FAMILIES}
    unknown = []
    for path in sorted(glob.glob(os.path.join(config_dir, "*.yaml"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        entry = (name, yaml.safe_load(text) or {}, _header(text))
        family = _family(name)
        (groups[family] if family else unknown).append(entry)
    if unknown:
        groups[None] = unknown
    count = sum(len(entries) for entries in groups.values())
    out = [f"The {count} configs shipped in `configs/` (installed as package data), by paper. "
           "Run one by name from any directory: `tfdml-train --config NAME` "
           "(`python train.py --config configs/NAME.yaml`); `tfdml-train --list-configs` lists them.", ""]
    titles = {prefix: (title, paper) for prefix, title, paper in FAMILIES}
    titles[None] = ("Other configs", "")
    for prefix, entries in groups.items():
        if not entries:
            continue
        title, paper = titles[prefix]
        out += [f"## {title}", ""]
        if paper:
            out += [f"Paper: {paper}.", ""]
        out += ["| config | dataset | backbone | dim | loss | EE n | batch | optimizer |",
                "|---|---|---|---|---|---|---|---|"]
        for name, config, _ in entries:
            expansion = config.get("expansion")
            n_points = expansion.get("n_points") if isinstance(expansion, dict) else None
            optimizer = _setting(config, "optimizer", "name")
            rate = _setting(config, "optimizer", "learning_rate")
            out.append("| " + " | ".join(_cell(v) for v in (
                f"`{name}`", _setting(config, "dataset", "name"), _setting(config, "model", "backbone"),
                _setting(config, "model", "embedding_dim"), _loss(config), n_points,
                _setting(config, "sampler", "batch_size"),
                f"{optimizer} {rate}" if optimizer else None)) + " |")
        out.append("")
        for name, _, header in entries:
            if header:
                out += [f'??? note "`{name}`: the config\'s header (protocol, differences from the paper\'s code)"',
                        "    " + html.escape(header, quote=False), ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- notebooks
def _text(source):
    return "".join(source) if isinstance(source, list) else source


def _fence(text, language=""):
    text = text.rstrip("\n")
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{language}\n{text}\n{ticks}"


def notebook_markdown(path):
    """Markdown of a Jupyter notebook (nbformat 4 JSON): its cells and their outputs."""
    with open(path, encoding="utf-8") as handle:
        notebook = json.load(handle)
    language = (notebook.get("metadata", {}).get("kernelspec", {}) or {}).get("language", "python")
    out = []
    for cell in notebook.get("cells", []):
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            # The page has its own title: the notebook's headings move one level down.
            out.append(re.sub(r"^#", "##", source.strip("\n"), flags=re.M))
        elif cell.get("cell_type") == "code":
            if source.strip():
                out.append(_fence(source, language))
            for output in cell.get("outputs", []):
                kind = output.get("output_type")
                if kind == "stream":
                    out.append(_fence(_text(output.get("text", "")), "text"))
                elif kind in ("execute_result", "display_data"):
                    data = output.get("data", {})
                    if "image/png" in data:
                        png = _text(data["image/png"]).replace("\n", "")
                        out.append(f'<img alt="output" src="data:image/png;base64,{png}">')
                    elif "text/plain" in data:
                        out.append(_fence(_text(data["text/plain"]), "text"))
                elif kind == "error":
                    out.append(_fence(f"{output.get('ename')}: {output.get('evalue')}", "text"))
        elif source.strip():
            out.append(_fence(source))
    return "\n\n".join(out) + "\n"


def on_page_markdown(markdown, page, config, files):
    if "<!-- tfdml:configs -->" in markdown:
        markdown = markdown.replace("<!-- tfdml:configs -->", configs_markdown())

    def notebook(match):
        path = os.path.join(ROOT, match.group(1))
        if not os.path.exists(path):
            log.warning("%s: notebook %s not found", page.file.src_path, match.group(1))
            return ""
        return notebook_markdown(path)

    return re.sub(r"<!-- tfdml:notebook (\S+) -->", notebook, markdown)


# ----------------------------------------------------------------------------- formulas
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def _rendered(match, display, page):
    """The formula drawn as inline SVG by matplotlib's mathtext (TeX subset; no JavaScript, no network)."""
    import base64
    import io

    from matplotlib import mathtext

    latex = html.unescape(match.group(1)).strip()
    svg = io.BytesIO()
    try:
        mathtext.math_to_image(f"${' '.join(latex.split())}$", svg, format="svg")
    except Exception as error:  # noqa: BLE001 — any parse failure is reported, not rendered
        log.warning("%s: formula %r cannot be drawn by matplotlib's mathtext: %s", page.file.src_path, latex,
                    str(error).splitlines()[0])
        return match.group(0)
    data = base64.b64encode(svg.getvalue()).decode("ascii")
    tag = "div" if display == "block" else "span"
    # The TeX source stays as the image's alternative text, so that it can be read and copied.
    return (f'<{tag} class="arithmatex math-{display}"><img class="formula" alt="{html.escape(latex)}" '
            f'src="data:image/svg+xml;base64,{data}"></{tag}>')


def on_post_page(output, page, config):
    output = _BLOCK.sub(lambda m: _rendered(m, "block", page), output)
    return _INLINE.sub(lambda m: _rendered(m, "inline", page), output)
