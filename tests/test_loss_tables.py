"""The loss tables of the README and of docs/guides/losses.md list every registered loss once,
with the Embedding Expansion column that the loss class declares (`supports_expansion`)."""
import os
import re

import pytest

import tfdml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = {"README.md": 3, os.path.join("docs", "guides", "losses.md"): 5}  # file: index of the EE column


def _rows(path, ee_column):
    """{name: EE cell} of the file's loss table: the first table whose header ends with an EE column."""
    with open(os.path.join(ROOT, path)) as handle:
        lines = handle.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| name |") and line.endswith("| EE |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        name = cells[0].strip("`")
        assert name not in rows, f"{path}: {name} listed twice"
        rows[name] = cells[ee_column]
    return rows


@pytest.mark.parametrize("path", sorted(TABLES))
def test_loss_table_lists_every_registered_loss_with_its_expansion_support(path):
    rows = _rows(path, TABLES[path])
    assert sorted(rows) == sorted(tfdml.losses.names()), path
    for name, cell in rows.items():
        if name == "cross_batch_memory":  # a wrapper: EE is its wrapped loss's
            assert cell == "via the wrapped loss"
        else:
            assert cell == ("yes" if tfdml.losses.get_class(name).supports_expansion else "—"), (path, name)
