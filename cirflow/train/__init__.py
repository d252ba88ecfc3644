"""Training data, the SPRC training loop, checkpoints and region boxes."""
