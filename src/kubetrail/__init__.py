"""kubetrail: a Kubernetes logging pipeline built for security threat hunting."""

__version__ = "0.1.0"
__all__ = ["__version__"]
