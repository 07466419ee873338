"""Mirror Northflank LLM model deployments into Kubernetes custom resources."""

__version__ = "0.1.0"
