"""CIRR data: the on-disk layout, robust image decoding and the embedded demo generator."""
