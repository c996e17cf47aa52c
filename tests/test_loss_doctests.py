"""Runs the `>>>` examples of every loss docstring as doctests (each example's value is
worked out by hand in its docstring)."""
import doctest
import importlib
import pkgutil

import pytest

import tfdml
import tfdml.losses

MODULES = sorted(f"tfdml.losses.{m.name}" for m in pkgutil.iter_modules(tfdml.losses.__path__))


def test_every_registered_loss_has_an_example():
    for name in tfdml.losses.names():
        assert ">>> loss = tfdml.losses." in tfdml.losses.get_class(name).__doc__, name


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module_name, globs={"tfdml": tfdml}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed in {module_name}"
