"""Route a job's logging, warnings and progress bars into its Snakemake log file, and clear the
temporaries that killed earlier attempts left beside the job's outputs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from cirflow.io import remove_stale_temps


@contextlib.contextmanager
def job_log(path: str | Path | None, outputs: Iterable[str | Path] = ()) -> Iterator[None]:
    """Send logging, stderr (tqdm) and stdout to `path` for the duration of the block; first
    remove the stale temporary files of `outputs` (the job's own output files)."""
    if path is None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        remove_stale_temps(outputs)
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1, encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(stream):
                try:
                    remove_stale_temps(outputs)
                    yield
                except Exception:
                    logging.getLogger("cirflow").exception("job failed")
                    raise
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
