"""zeta-swarm trainer: zeros datasets, the prime-offset GNN and one training trial."""

__version__ = "0.1.0"
