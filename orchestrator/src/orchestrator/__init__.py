"""zeta-swarm orchestrator: studies, runners and the swarm controller. Never imports torch or trainer."""

__version__ = "0.1.0"
