"""Vigil's model server: scikit-learn models over the Open Inference Protocol and KServe V1."""

# Set by `make release` with every other place the version is written (hack/versions.py).
__version__ = "0.1.0"
