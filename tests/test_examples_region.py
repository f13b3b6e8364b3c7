"""Smoke tests of the region-graph examples: the visualization script and the tutorial (``--quick``)."""

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *argv])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_visualize_region_spn_writes_standalone_html(tmp_path, monkeypatch, capsys):
    html = tmp_path / "spn.html"

    run_example("visualize_region_spn.py", ["--output", str(html)], monkeypatch)

    out = capsys.readouterr().out
    assert "row 0: IndicatorLeaf   16 nodes (6 padding)" in out
    text = html.read_text()
    assert len(text) > 1_000_000  # plotly.js is embedded: the file works offline
    assert "{X2, X4}" in text and "DenseProduct" in text


def test_tutorial_quick(tmp_path, monkeypatch, capsys):
    run_example("understanding_region_spns.py", ["--quick", "--output-dir", str(tmp_path)], monkeypatch)

    out = capsys.readouterr().out
    assert "sum over all states: 1.000000" in out
    assert "ratspn(...) builds the same layers: True" in out
    assert "Mean log-likelihood (nats per sample)" in out
    assert (tmp_path / "understanding_region_spns.html").stat().st_size > 1_000_000


def test_notebook_mirrors_the_tutorial_script():
    notebook = json.loads((EXAMPLES / "understanding_region_spns.ipynb").read_text())
    script = (EXAMPLES / "understanding_region_spns.py").read_text()
    code = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert len(code) >= 6
    for source in code:
        assert source.strip() in script
    assert notebook["nbformat"] == 4


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
