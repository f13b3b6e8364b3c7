"""The documentation (``docs/``) builds without warnings, documents every public name, and its code runs.

The build is the one of the README: ``python -m sphinx -W --keep-going -b html docs <outdir>``; it renders the
notebooks without executing them (``tests/test_notebooks.py`` runs those).
"""

import importlib
import inspect
import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: Modules whose public names (``__all__``, or the public objects they define) the API reference must document.
PUBLIC_MODULES = (
    "libspn_keras",
    "libspn_keras.layers",
    "libspn_keras.sum_ops",
    "libspn_keras.models",
    "libspn_keras.initializers",
    "libspn_keras.constraints",
    "libspn_keras.losses",
    "libspn_keras.metrics",
    "libspn_keras.optimizers",
    "libspn_keras.config",
    "libspn_keras.config.sum_op",
    "libspn_keras.config.accumulator_initializer",
    "libspn_keras.config.accumulator_constraint",
    "libspn_keras.region",
    "libspn_keras.visualize",
    "libspn_keras.logspace",
    "libspn_keras.datasets",
    "libspn_keras.math",
    "libspn_keras.structure",
)

#: Every public name of the LibSPN Keras 0.5.2 reference manual (its index), plus ``SumOpSampleBackprop`` of the
#: 0.6 sum-op docs, under the name the manual gives it.
MANUAL_NAMES = (
    *(
        f"libspn_keras.layers.{name}"
        for name in (
            "NormalLeaf",
            "CauchyLeaf",
            "LaplaceLeaf",
            "IndicatorLeaf",
            "FlatToRegions",
            "PermuteAndPadScopes",
            "PermuteAndPadScopesRandom",
            "DenseSum",
            "DenseProduct",
            "ReduceProduct",
            "RootSum",
            "Local2DSum",
            "Conv2DSum",
            "Conv2DProduct",
            "SpatialToRegions",
            "TemporalDenseProduct",
            "LogDropout",
            "NormalizeStandardScore",
        )
    ),
    "libspn_keras.models.SumProductNetwork",
    "libspn_keras.models.SequentialSumProductNetwork",
    "libspn_keras.models.DynamicSumProductNetwork",
    "libspn_keras.config.sum_op.set_default_sum_op",
    "libspn_keras.config.sum_op.get_default_sum_op",
    "libspn_keras.sum_ops.SumOpGradBackprop",
    "libspn_keras.sum_ops.SumOpEMBackprop",
    "libspn_keras.sum_ops.SumOpHardEMBackprop",
    "libspn_keras.sum_ops.SumOpUnweightedHardEMBackprop",
    "libspn_keras.sum_ops.SumOpSampleBackprop",
    "libspn_keras.config.accumulator_initializer.set_default_accumulator_initializer",
    "libspn_keras.config.accumulator_initializer.get_default_accumulator_initializer",
    "libspn_keras.initializers.PoonDomingosMeanOfQuantileSplit",
    "libspn_keras.initializers.KMeans",
    "libspn_keras.initializers.Equidistant",
    "libspn_keras.initializers.EpsilonInverseFanIn",
    "libspn_keras.initializers.Dirichlet",
    "libspn_keras.losses.NegativeLogJoint",
    "libspn_keras.losses.NegativeLogLikelihood",
    "libspn_keras.optimizers.OnlineExpectationMaximization",
    "libspn_keras.metrics.LogLikelihood",
    "libspn_keras.constraints.GreaterEqualEpsilonNormalized",
    "libspn_keras.constraints.GreaterEqualEpsilon",
    "libspn_keras.constraints.LogNormalized",
    "libspn_keras.constraints.Clip",
    "libspn_keras.RegionVariable",
    "libspn_keras.RegionNode",
    "libspn_keras.region_graph_to_dense_spn",
    "libspn_keras.visualize.visualize_dense_spn",
)

#: Pages whose ``python`` code blocks form one runnable program each.
RUNNABLE_PAGES = ("index.md", "tutorials/inference.md", "differences.md", "structure.md")

TF_NOISE = re.compile(r"^(?:[IWE]\d{4} |WARNING: All log messages|To enable the following instructions)")


def _public_names(module_name):
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name
        ]
    return module, [name for name in names if not inspect.ismodule(getattr(module, name))]


def _documented(inventory):
    return {name for entries in inventory.values() for name in entries}


def _resolve(dotted):
    """The object a documented name refers to, or ``None``."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                value = getattr(value, attribute)
        except AttributeError:
            return None
        return value
    return None


def test_docs_build_without_warnings_and_cover_the_api(tmp_path):
    pytest.importorskip("sphinx", reason="documentation tools not installed (pip install '.[test]')")
    pytest.importorskip("myst_nb", reason="documentation tools not installed (pip install '.[test]')")
    from sphinx.util.inventory import InventoryFile

    out = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    messages = [line for line in (result.stdout + result.stderr).splitlines() if not TF_NOISE.match(line)]
    assert result.returncode == 0, "sphinx build failed:\n" + "\n".join(messages)

    with open(out / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", posixpath.join)
    inventory = getattr(inventory, "data", inventory)  # Sphinx >= 8.2 wraps the mapping
    documented = _documented(inventory)
    documented_objects = [_resolve(name) for name in documented]

    missing = []
    for module_name in PUBLIC_MODULES:
        module, names = _public_names(module_name)
        for name in names:
            value = getattr(module, name)
            # A re-export counts where the object itself is documented (e.g. libspn_keras.SumOpGradBackprop).
            if f"{module_name}.{name}" not in documented and not any(value is obj for obj in documented_objects):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names missing from the API reference: {missing}"

    not_in_manual_place = [name for name in MANUAL_NAMES if name not in documented]
    assert not not_in_manual_place, f"manual names not documented under the manual's name: {not_in_manual_place}"

    for page in ("index", "installation", "differences", "distributed", "api/index", "tutorials/index"):
        assert (out / f"{page}.html").is_file()
    tutorials = {path.stem for path in (out / "tutorials").glob("*.html")}
    assert {"understanding_region_spns", "dgcspn_classification", "dgcspn_completion", "inference"} <= tutorials
    assert {"dynamic_spns", "benchmarks"} <= tutorials


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_code_runs(page):
    text = (DOCS / page).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"no python code blocks in {page}"
    namespace = {"__name__": f"docs_{Path(page).stem}"}
    exec(compile("\n\n".join(blocks), str(DOCS / page), "exec"), namespace)


def test_readme_starts_with_the_two_set_up_commands():
    text = (REPO / "README.md").read_text()
    first_block = re.match(r"```bash\n(.*?)\n```\n", text, re.DOTALL)
    assert first_block is not None, "README.md must open with a bash block"
    assert first_block.group(1).splitlines() == [
        'pip install ".[demo]" && python examples/demo.py',
        'pip install ".[test]" && python -m pytest',
    ]


def test_readme_demo_numbers_are_the_ones_the_demo_printed():
    # The seed-0 output in examples/README.md is the demo's own printout; the README's table quotes it.
    printed = (REPO / "examples" / "README.md").read_text()
    output = re.search(r"```text\n(8x8 digits:.*?)```", printed, re.DOTALL).group(1)
    test_ll = re.search(r"test log-likelihood per image: +(-?[\d.]+) nats \(([\d.]+) bits", output)
    baseline = re.search(r"histograms \(baseline\) log-likelihood per image: +(-?[\d.]+) nats", output)
    accuracy = re.search(r"test accuracy: ([\d.]+)%", output).group(1)
    accuracy_half = re.search(r"missing \(NaN\): ([\d.]+)%", output).group(1)
    readme = (REPO / "README.md").read_text()
    demo_section = readme[readme.index("## The demo: measured results") : readme.index("## Examples")]
    for number in (test_ll.group(1), baseline.group(1), f"{accuracy}%", f"{accuracy_half}%"):
        assert number in demo_section, number
    assert f"{float(test_ll.group(2)):.2f} bits per pixel" in demo_section
