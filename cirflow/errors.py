"""User-facing errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

KEY = "{key}"


class CirflowError(Exception):
    """A problem the user can fix: the message names the file or config key and what is wrong."""


class SettingError(CirflowError):
    """A setting's value is the problem. A lower layer knows only its own parameter's name
    (`setting`) and writes `{key}` where the message names it; the layer that knows where the
    value came from — a config key or a flag — puts that in (`naming_keys`). Unnamed, the
    message reads with the parameter's name."""

    def __init__(self, setting: str, message: str):
        self.setting, self.message = setting, message
        super().__init__(message.replace(KEY, setting))

    def named(self, key: str) -> CirflowError:
        return CirflowError(self.message.replace(KEY, key))


@contextmanager
def naming_keys(key_of: Callable[[str], str]) -> Iterator[None]:
    """Inside: a SettingError becomes a CirflowError naming `key_of(setting)`, the key the
    user set."""
    try:
        yield
    except SettingError as exc:
        raise exc.named(key_of(exc.setting)) from None


def rebuilt_by(rule: str, *paths: object) -> str:
    """What to do about damaged workflow outputs: Snakemake reruns the job of an output that is
    missing, and after it the jobs built on it (the library names the rule, it never imports
    snakemake)."""
    files = " and ".join(str(p) for p in paths)
    them = "them" if len(paths) > 1 else "it"
    return f"delete {files} and rerun snakemake: rule {rule} rebuilds {them}"
