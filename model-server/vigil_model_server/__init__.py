"""Vigil's model server: scikit-learn models over the Open Inference Protocol and KServe V1."""
