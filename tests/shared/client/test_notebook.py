"""``examples/from_python.ipynb`` executed (nbclient) against a real deployment -- Redis, a
serving scheduler and a processor, the real programs -- so the example cannot rot."""

from __future__ import annotations

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


@pytest.mark.timeout(600)
def test_the_example_notebook_runs_end_to_end(cluster, monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("RQP_"):
            monkeypatch.delenv(name)
    for name, value in {**cluster.env, "RQP_EXAMPLE_ROWS": ROWS}.items():
        if name.startswith("RQP_"):
            monkeypatch.setenv(name, value)
    _serve(cluster)
    cluster.start_processor(workers=2)
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
