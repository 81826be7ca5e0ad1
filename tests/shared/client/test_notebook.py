"""``examples/from_python.ipynb`` executed (nbclient) against a real deployment -- Redis, a
serving scheduler and a processor, the real programs -- so the example cannot rot."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from harness import bin_path

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("pandas")

NOTEBOOK = Path(__file__).resolve().parents[3] / "examples" / "from_python.ipynb"
#: small enough for CI, large enough for several chunks to stream before the end
ROWS = "3000"


def _serve(cluster) -> subprocess.Popen:
    with open(cluster.root / "scheduler.log", "wb") as log:
        p = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"],
            env=cluster.env,
            cwd=cluster.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.procs.append(p)
    return p


@pytest.fixture
def deployment(cluster, monkeypatch):
    """A serving scheduler and a processor, and this process's environment pointed at them as a
    user's would be (the notebook's kernel inherits it)."""
    for name in list(os.environ):
        if name.startswith("RQP_"):
            monkeypatch.delenv(name)
    for name, value in {**cluster.env, "RQP_EXAMPLE_ROWS": ROWS}.items():
        if name.startswith("RQP_"):
            monkeypatch.setenv(name, value)
    _serve(cluster)
    cluster.start_processor(workers=2)
    return cluster


@pytest.mark.timeout(600)
def test_the_example_notebook_runs_end_to_end(deployment):
    cluster = deployment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=540, kernel_name="python3", resources={"metadata": {"path": str(cluster.root)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "submitted in" in text
    assert "INV-000007" in text  # the failures DataFrame shows the refused invoice
    assert "state='done'" in text


@pytest.mark.timeout(300)
def test_the_readme_example_runs_as_printed(deployment):
    """The README's "From Python" example, pasted: it streams both results and reads them back."""
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len(code.group(1).splitlines()) <= 12
    printed = io.StringIO()
    scope: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code.group(1), "README.md", "exec"), scope)
    lines = printed.getvalue().splitlines()
    assert sorted(lines) == sorted(
        ["{'id': 0, 'key': 'INV-1', 'result': {'cents': 1250}}", "{'id': 1, 'key': 'INV-2', 'result': {'cents': -300}}"]
    )
    assert scope["results"].to_dict("records") == [  # type: ignore[attr-defined]
        {"id": 0, "key": "INV-1", "cents": 1250},
        {"id": 1, "key": "INV-2", "cents": -300},
    ]
    assert scope["failures"].empty  # type: ignore[attr-defined]
