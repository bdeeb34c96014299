"""The Tuner and Runner contracts as reusable test suites, and the one list of backends they run
against (backends.py). Importable from anywhere in the tree (`from contracts.tuner import
TunerContract`): pytest puts tests/ on sys.path (pyproject.toml, `pythonpath`)."""
