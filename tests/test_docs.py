"""The documentation site (`mkdocs.yml`, `docs/`): the strict build, what makes it fail, and the
built pages as headless Chromium renders them."""
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"
_CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _mkdocs_build(root, site_dir):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", site_dir,
         "--config-file", os.path.join(root, "mkdocs.yml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = str(tmp_path_factory.mktemp("site"))
    result = _mkdocs_build(ROOT, site_dir)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return site_dir


def test_strict_build_writes_every_page(site):
    for page in ("index.html", "getting-started.html", "reproducing.html", "examples/quickstart.html",
                 "guides/losses.html", "api/losses.html", "api/training.html", "api/weights.html"):
        assert os.path.exists(os.path.join(site, page)), page
    with open(os.path.join(site, "reproducing.html"), encoding="utf-8") as handle:
        reproducing = handle.read()
    configs = sorted(name[:-len(".yaml")] for name in os.listdir(os.path.join(ROOT, "configs"))
                     if name.endswith(".yaml"))
    missing = [name for name in configs if f"<code>{name}</code>" not in reproducing]
    assert not missing, f"configs not listed on 'Reproducing the papers': {missing}"
    with open(os.path.join(site, "examples", "quickstart.html"), encoding="utf-8") as handle:
        notebook = html.unescape(re.sub(r"<[^>]+>", "", handle.read()))  # code is highlighted
    assert "tfdml.data.load_split" in notebook and "tfdml.export" in notebook
    with open(os.path.join(site, "guides", "losses.html"), encoding="utf-8") as handle:
        losses = handle.read()
    # Formulas are drawn at build time (SVG); no TeX left for a script that is not there.
    assert losses.count('<img class="formula"') > 10 and "\\(" not in losses and "\\[" not in losses


def test_strict_build_fails_on_undocumented_name_and_broken_link(tmp_path):
    """A public name without a docstring and a link to a missing page each fail the strict build."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("docs", "configs", "examples", "tfdml"):
        shutil.copytree(os.path.join(ROOT, name), root / name, ignore=ignore)
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), root / "mkdocs.yml")
    with open(root / "tfdml" / "distances.py", "a", encoding="utf-8") as handle:
        handle.write("\n\ndef undocumented_public_name(x):\n    return x\n")
    with open(root / "docs" / "index.md", "a", encoding="utf-8") as handle:
        handle.write("\nSee [a page that is not there](no-such-page.md).\n")
    result = _mkdocs_build(str(root), str(tmp_path / "site"))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "tfdml.distances.undocumented_public_name" in output, output
    assert "no-such-page.md" in output, output


# Runs in the page after its stylesheets apply; records what the browser laid out.
_CHECK_SCRIPT = """<script>
(function () {
  const article = document.querySelector("article") || document.body;
  const area = (element) => {
    if (!element) return 0;
    const box = element.getBoundingClientRect();
    return box.width * box.height;
  };
  const math = article.querySelector(".arithmatex img.formula");
  const items = Array.from(article.querySelectorAll("ul > li"));
  const heading = article.querySelector("h1");
  document.body.setAttribute("data-render-check", JSON.stringify({
    title: document.title,
    h1: heading ? heading.textContent : "",
    math_area: area(math),
    math_loaded: math ? math.complete && math.naturalWidth > 0 : false,
    math_alt: math ? math.alt : "",
    code_area: area(article.querySelector("pre code")),
    code_text: (article.querySelector("pre code") || {}).textContent || "",
    list_items: items.filter((item) => area(item) > 0).length,
    list_text: items.map((item) => item.textContent).join("\\n"),
  }));
})();
</script>"""


def _render(site, page):
    """Opens `page` of the built site in headless Chromium; returns what it laid out."""
    source = os.path.join(site, page)
    check = os.path.join(os.path.dirname(source), "_render_check_" + os.path.basename(source))
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    with open(check, "w", encoding="utf-8") as handle:
        handle.write(text.replace("</body>", _CHECK_SCRIPT + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
             "--dump-dom", "file://" + check],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'data-render-check="([^"]*)"', result.stdout)
    assert match, f"the check script did not run on {page}:\n{result.stdout[:2000]}"
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="chromium-headless-shell is not installed "
                           "(apt-get install chromium-headless-shell; .ci/run installs it)")
@pytest.mark.parametrize("page, title, h1, code, item", [
    ("index.html", "tfdml", "tfdml — deep metric learning", "tfdml.EmbeddingExpansion",
     "Reproducing the papers"),
    # The API page: the list comes from a docstring (TripletLoss's forms), so its '- item'
    # lines must render as a list.
    ("api/losses.html", "tfdml.losses", "tfdml.losses", "tfdml.losses.TripletLoss",
     'form="softplus"'),
])
def test_pages_render_in_chromium(site, page, title, h1, code, item):
    rendered = _render(site, page)
    assert title in rendered["title"], rendered["title"]
    assert rendered["h1"].startswith(h1), rendered["h1"]
    # A formula: drawn (the SVG decoded and laid out), its TeX kept as the alternative text.
    assert rendered["math_loaded"] and rendered["math_area"] > 0, rendered
    assert rendered["math_alt"].strip(), rendered
    # A code block and a bulleted list, laid out.
    assert rendered["code_area"] > 0 and code in rendered["code_text"], rendered["code_text"][:500]
    assert rendered["list_items"] >= 2, rendered
    assert item in rendered["list_text"], rendered["list_text"][:2000]
