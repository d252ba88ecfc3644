"""Composed-query features, the CIRR recall protocol and the test-server files."""
