"""smtp-lab: a containerized SMTP test lab and troubleshooting harness."""

__version__ = "0.1.0"
