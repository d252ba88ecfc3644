"""SPRC on LAVIS components: presets, the model, checkpoints (see sprc.py for the equations)."""
