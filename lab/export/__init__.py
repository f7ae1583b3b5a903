"""Renderings of a lab for other runtimes (Kubernetes manifests), on paper only."""
