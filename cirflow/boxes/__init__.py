"""Object boxes for CIRR images: detectors, sharded generation, merging, statistics, quality."""
