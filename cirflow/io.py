"""Atomic file output, the CSV tables' one writer, and JSON input with errors that name the file.

Every output of the workflow goes through `atomic_path`: it is written to a temporary file in the
same directory and renamed with `os.replace`, so a killed job never leaves a half-written file
that Snakemake (or a user) could mistake for a finished one.

The temporary file of `<dir>/<name>` is `<dir>/.<name>.XXXXXXXX.tmp<suffix>` (XXXXXXXX from
`tempfile.mkstemp`). A job killed mid-write leaves it behind (a GB for a CIRR checkpoint), so each
job starts with `remove_stale_temps(its outputs)`: only the temporaries of its own output names,
never another job's (Snakemake never runs two jobs with the same output at once).

A write that fails for lack of room (a full disk or quota; torch.save's own report of a failed
write) becomes a CirflowError naming the file and the free space left (`failed_writes_named`):
its temporary is removed first and the file it was to replace is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cirflow.errors import CirflowError

log = logging.getLogger(__name__)
# The random part of a `tempfile.mkstemp` name.
_RANDOM = "[a-z0-9_]{8}"
# A write refused for lack of room: the file system is full, or the user's quota is.
NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
# torch.save's archive writer reports a failed write in its own words, as a RuntimeError
# ("[enforce fail at inline_container.cc:…] . unexpected pos 704 vs 598", or "PytorchStreamWriter
# failed writing file …: file write failed"); the Python file's OSError, when there is one, is
# only that error's context, or is raised when the file is closed.
TORCH_WRITE_FAILURES = ("unexpected pos", "file write failed")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.
    A write that fails for lack of room is a CirflowError naming `path` (`failed_writes_named`)."""
    target = Path(path)
    with failed_writes_named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix or f".tmp{target.suffix}", dir=target.parent
        )
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            # mkstemp creates 0600 files; give outputs the usual umask-based mode so that
            # colleagues on a shared cluster can read them.
            os.chmod(tmp_path, 0o666 & ~_current_umask())
            os.replace(tmp_path, target)
        finally:
            # Removed before a failure is reported, so that the free space it gives is true.
            if tmp_path.exists():
                tmp_path.unlink()


@contextlib.contextmanager
def failed_writes_named(path: str | os.PathLike, aftermath: str | None = None) -> Iterator[None]:
    """Inside: a write that fails for lack of room (`is_failed_write`) becomes a CirflowError
    naming `path`, the free space of its file system and what to do; other errors pass.
    Whatever the block cleans up on its way out is gone before the free space is measured.
    `aftermath`: what the failure left behind, when the write was not atomic."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if not is_failed_write(exc):
            raise
        raise failed_write_error(path, exc, aftermath) from exc


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, then the errors it was raised from or while handling."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _no_room(exc: BaseException) -> str | None:
    """Why the file system refused the write (`NO_ROOM`), if `exc` or an error behind it says."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            return NO_ROOM[e.errno]
    return None


def _torch_write_failure(exc: BaseException) -> str | None:
    for e in _chain(exc):
        if isinstance(e, RuntimeError) and any(t in str(e) for t in TORCH_WRITE_FAILURES):
            return str(e).strip().splitlines()[-1]
    return None


def is_failed_write(exc: BaseException) -> bool:
    """Whether `exc` is a write refused for lack of room, or torch.save's report of a write
    that failed (whose cause it does not give: a full disk, almost always)."""
    return _no_room(exc) is not None or _torch_write_failure(exc) is not None


def free_space(path: str | os.PathLike) -> str:
    """The free space of the file system that holds `path` (or its nearest existing folder),
    e.g. '1.2 GB'."""
    folder = Path(path).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "an unknown amount"
    return human_bytes(free)


def human_bytes(count: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as `df -H`)."""
    size, unit = float(count), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def failed_write_error(
    path: str | os.PathLike, exc: BaseException, aftermath: str | None = None
) -> CirflowError:
    """The message of a write that failed for lack of room: the file, the free space, what the
    failure left (an atomic write: nothing changed) and what to do."""
    reason = _no_room(exc) or (
        f"torch could not write it ({_torch_write_failure(exc)}; a full disk or quota, almost "
        "always)"
    )
    aftermath = aftermath or (
        f"Nothing written before is touched: {path} is as it was (absent if it was) and the "
        "partial file is removed"
    )
    return CirflowError(
        f"cannot write {path}: {reason}; {free_space(path)} free on its file system. "
        f"{aftermath}. Free space there (or raise the quota) and rerun."
    )


def temp_name_pattern(path: str | os.PathLike, suffix: str | None = None) -> re.Pattern:
    """The names `atomic_path(path, suffix)` gives its temporary files (beside `path`)."""
    target = Path(path)
    tail = suffix or f".tmp{target.suffix}"
    return re.compile(rf"\.{re.escape(target.name)}\.{_RANDOM}{re.escape(tail)}")


def stale_temps(path: str | os.PathLike) -> list[Path]:
    """Temporary files of `path` left by killed writes (`atomic_path`, or a link being made)."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    pattern = temp_name_pattern(target)
    link = f".{target.name}.link"
    return sorted(
        p
        for p in target.parent.iterdir()
        if (pattern.fullmatch(p.name) or p.name == link) and not p.is_dir()
    )


def remove_stale_temps(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the leftovers of killed writes of exactly these output files; returns them.
    A directory output is skipped (Snakemake removes it, contents included, before the job)."""
    removed = []
    for path in paths:
        if Path(path).is_dir():
            continue
        for stale in stale_temps(path):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    if removed:
        log.info(
            "removed %d stale temporary file(s) of killed writes: %s",
            len(removed),
            ", ".join(map(str, removed)),
        )
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


CellFormat = Callable[[Any], str]


def plain_cell(value: Any) -> str:
    """Text and integers as they are, None as an empty cell, other numbers to 6 significant
    digits (the per-epoch CSVs)."""
    if value is None:
        return ""
    if isinstance(value, (str, int)):
        return str(value)
    return f"{value:.6g}"


def fixed_cell(digits: int, signed: bool = False, blank_nan: bool = False) -> CellFormat:
    """Numbers to `digits` decimals, with their sign when `signed` (deltas); None, and NaN too
    when `blank_nan`, as an empty cell."""
    spec = f"{'+' if signed else ''}.{digits}f"

    def cell(value: Any) -> str:
        if value is None or (blank_nan and math.isnan(value)):
            return ""
        return format(value, spec)

    return cell


def csv_text(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    formats: Mapping[str, CellFormat] | None = None,
) -> str:
    """A header line of `columns`, then a line per row, each cell written by its column's
    format (`plain_cell` unless `formats` names one; a key the row lacks is an empty cell).
    Nothing is quoted: the tables hold numbers and names without commas."""
    formats = formats or {}
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(formats.get(c, plain_cell)(row.get(c)) for c in columns))
    return "\n".join(lines) + "\n"


def write_csv_atomic(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    formats: Mapping[str, CellFormat] | None = None,
) -> str:
    """Write `csv_text(rows, columns, formats)` to `path`; returns the text."""
    text = csv_text(rows, columns, formats)
    write_text_atomic(path, text)
    return text


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """Deterministic JSON text (keys in insertion order, trailing newline)."""
    return json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    write_text_atomic(path, dumps_json(obj, indent=indent))


def read_json(path: str | os.PathLike, what: str = "JSON file", advice: str | None = None) -> Any:
    """Read JSON, raising CirflowError that names the file for a missing, empty or invalid file;
    `advice` (what rebuilds the file, for a workflow output) ends each message."""
    p = Path(path)
    tail = f"; {advice}" if advice else ""
    if not p.exists():
        raise CirflowError(f"{what} not found: {p}{tail}")
    if p.is_dir():
        raise CirflowError(f"{what} is a directory, expected a file: {p}{tail}")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise CirflowError(f"{what} is empty: {p}{tail}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CirflowError(
            f"{what} is not valid JSON: {p} (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            f"{tail}"
        ) from exc
