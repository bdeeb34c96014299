"""zeta-swarm trainer: zeros datasets, the prime-offset GNN and one training trial."""

import os

# Torch's OpenMP workers spin after every parallel op by default, on the very cores the layer
# kernels' own threads then need (trainer.fused: a trial with cpu_threads 2 ran its steps no
# faster than on one thread, docs/speed.md). A passive wait leaves the cores to whoever works.
# OpenMP reads this once, when torch loads it: here, before any trainer module imports torch. A
# value already set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
