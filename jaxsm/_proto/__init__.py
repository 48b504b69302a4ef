"""Modules generated from ``protos/`` — do not edit; regenerate with ``python scripts/gen_protos.py``."""
