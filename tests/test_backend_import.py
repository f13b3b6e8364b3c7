"""``import libspn_keras`` on the JAX backend does not import TensorFlow (issue 19)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("jax")


def test_import_on_jax_does_not_import_tensorflow():
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = "import libspn_keras, sys; assert 'tensorflow' not in sys.modules, 'libspn_keras imported TensorFlow'"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
