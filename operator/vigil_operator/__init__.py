"""Vigil's operator: rolls scikit-learn model versions out and back on their accuracy."""

# Set by `make release` with every other place the version is written (hack/versions.py).
__version__ = "0.1.0"
