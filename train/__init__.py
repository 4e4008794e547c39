"""Training and evaluation scripts for the paper's networks (run from the repository root)."""
