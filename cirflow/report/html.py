"""What the report pages share: one jinja environment whose loader finds every page's template
(each page package's `templates/`) and `templates/base.html` beside this module, the head,
style, header, nav and main every page extends; the filters the pages write numbers with; the
data: URIs their images are embedded as; the version and configuration text they show.

The results page (`cirflow.report.results`) imports it: it imports neither torch nor box code.
"""

from __future__ import annotations

import base64
import functools
import math
from importlib import metadata
from pathlib import Path

import jinja2

REPORT_DIR = Path(__file__).parent


def int_text(value) -> str:
    """An integer with thousands separators; anything else as str."""
    return f"{value:,}" if isinstance(value, int) else str(value)


def value_text(value) -> str:
    """A JSON value in a table: integers with separators, floats to 4 decimals (2 from 10 up)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return str(value)


def number_text(value, signed: bool = False, digits: int = 2) -> str:
    """A recall or a delta: `digits` decimals, with its sign when `signed`; "–" when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


@functools.cache
def environment() -> jinja2.Environment:
    # The shared templates first, then one folder per page package (cirflow/report/*/templates).
    folders = [REPORT_DIR / "templates", *sorted(REPORT_DIR.glob("*/templates"))]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(int=int_text, value=value_text, num=number_text)
    return env


def render(template: str, **context) -> str:
    """The page `template` (a file name in a page package's templates/) filled with `context`."""
    return environment().get_template(template).render(**context)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def version() -> str:
    """The installed cirflow's version, as the pages' header shows it."""
    try:
        return metadata.version("cirflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def yaml_text(config) -> str:
    """Configuration as a page shows it: YAML in the given key order."""
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
