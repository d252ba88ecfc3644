"""cirflow: boxes, validation, SPRC training and evaluation for composed image retrieval on CIRR."""

__version__ = "0.1.0"
