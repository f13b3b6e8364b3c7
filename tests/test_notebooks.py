"""Execute the example notebooks (``examples/*.ipynb``) end to end at tiny sizes and check that no cell fails.

Each notebook runs in a fresh ``python3`` kernel from ``examples/`` (so its relative paths resolve as in Jupyter)
with ``LIBSPN_KERAS_EXAMPLE_ARGS="--quick --output-dir <tmp>"``: the notebooks pass these arguments to the script
code they hold (see ``examples/make_notebooks.py``), so a notebook runs the script's ``--quick`` smoke run and
writes its pictures into a temporary folder.

The kernel runs on the backend of the test run (``KERAS_BACKEND=jax python -m pytest tests/test_notebooks.py``
executes the notebooks on JAX). The data comes from the shared data folder (``LIBSPN_KERAS_SHARED_DATA``, by
default ``../shared/data`` next to the repository).
"""

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

import keras
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# The shared data folder next to the repository; LIBSPN_KERAS_SHARED_DATA points elsewhere (e.g. from a worktree).
SHARED_DATA = Path(os.environ.get("LIBSPN_KERAS_SHARED_DATA", EXAMPLES.parent / ".." / "shared" / "data"))
OLIVETTI_DIR = SHARED_DATA / "olivetti"
#: each notebook's data folder (a notebook without its files there falls back or fetches them, as its script does)
DATA_ARGS = {
    "dgcspn_completion": ["--data-dir", str(OLIVETTI_DIR)],
    "understanding_region_spns": ["--data-dir", str(SHARED_DATA / "debd")],  # digits if nltcs is absent
}
NOTEBOOKS = sorted(path.stem for path in EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a quick run takes seconds; the limit only stops a hung kernel


def _make_notebooks():
    spec = importlib.util.spec_from_file_location("example_make_notebooks", EXAMPLES / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_the_twin_of_its_script(name):
    # Regenerate with: python examples/make_notebooks.py examples/<name>.py
    script = EXAMPLES / f"{name}.py"
    assert script.is_file(), f"{name}.ipynb has no {name}.py twin"
    cells = json.loads((EXAMPLES / f"{name}.ipynb").read_text())["cells"]
    expected = _make_notebooks().script_cells(script.read_text())
    assert [(cell["cell_type"], "".join(cell["source"])) for cell in cells] == expected


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors(name, tmp_path, monkeypatch):
    if name == "dgcspn_completion" and not (OLIVETTI_DIR / "olivettifaces.mat").is_file():
        pytest.skip(f"Olivetti faces not found at {OLIVETTI_DIR.resolve()} (shared data directory absent)")
    notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    # The kernel inherits this environment.
    args = ["--quick", "--output-dir", str(tmp_path), *DATA_ARGS.get(name, [])]
    monkeypatch.setenv("LIBSPN_KERAS_EXAMPLE_ARGS", shlex.join(args))
    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())  # the kernel runs on the backend of the tests
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:  # names the cell and prints its traceback
        pytest.fail(f"{name}.ipynb failed:\n{error}")

    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    written = list(tmp_path.iterdir())
    assert written, f"{name}.ipynb wrote nothing to --output-dir {tmp_path}"
    last = notebook.cells[-1] if notebook.cells[-1].cell_type == "code" else notebook.cells[-2]
    assert last.execution_count is not None  # every cell ran, down to the last code cell
