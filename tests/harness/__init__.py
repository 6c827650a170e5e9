"""Test harness: the real local control plane, Prometheus and local processes."""
