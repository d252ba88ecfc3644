"""The stage comparison page: stage 1, the control (stage 2 without the region term) and
stage 2 on CIRR val.

One small self-contained HTML page from `results/{ds}/eval/comparison.csv` (COLUMNS: the table
rule compare_stages writes) and the stages' `val_metrics.json`. It has a rule of its own
(`stage_report`) so that the box validation page never waits for training. One seed: the page
says it is a sanity check; the ablation target measures the effect (docs/design.md §11).
"""

from __future__ import annotations

import csv
import html
import logging
from pathlib import Path

from cirflow.errors import CirflowError
from cirflow.io import read_json, write_text_atomic

log = logging.getLogger(__name__)

# comparison.csv's columns (cirflow.evaluate.run.COMPARISON_COLUMNS; a test keeps them equal).
COLUMNS = ("metric", "stage1", "stage2_control", "stage2", "delta_vs_control", "delta_vs_stage1")
STAGES = ("stage1", "stage2_control", "stage2")


def read_comparison(path: str | Path) -> list[dict]:
    """The rows of comparison.csv as {column: float, or None for an empty cell}."""
    path = Path(path)
    if not path.is_file():
        raise CirflowError(f"stage comparison not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise CirflowError(f"stage comparison is empty: {path}")
    if tuple(rows[0]) != COLUMNS:
        raise CirflowError(f"{path}: expected the columns {', '.join(COLUMNS)}, got {rows[0]}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise CirflowError(f"{path}, line {line}: expected {len(COLUMNS)} cells, got {row}")
        try:
            out.append(
                {
                    "metric": row[0],
                    **{
                        c: float(v) if v != "" else None
                        for c, v in zip(COLUMNS[1:], row[1:], strict=True)
                    },
                }
            )
        except ValueError as exc:
            raise CirflowError(f"{path}, line {line}: {exc}") from None
    return out


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _delta_class(value: float | None) -> str:
    return "" if value is None else "up" if value > 0 else "down" if value < 0 else ""


def render_stage_page(rows: list[dict], metrics: dict[str, dict], sources: dict[str, str]) -> str:
    esc = html.escape
    body = []
    for r in rows:
        exact = [metrics[s].get(r["metric"]) if s in metrics else None for s in STAGES]
        title = " / ".join("–" if v is None else repr(v) for v in exact)
        cells = "".join(f'<td class="num">{_num(r[s])}</td>' for s in STAGES)
        deltas = "".join(
            f'<td class="num {_delta_class(r[c])}">{_num(r[c], True)}</td>'
            for c in ("delta_vs_control", "delta_vs_stage1")
        )
        body.append(f'<tr title="{esc(title)}"><td>{esc(r["metric"])}</td>{cells}{deltas}</tr>')
    inputs = "".join(
        f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in sources.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>Stage 1, control and stage 2 on CIRR val</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1d2330; max-width: 60em; }}
  table {{ border-collapse: collapse; margin: 1em 0; }}
  th, td {{ border: 1px solid #d3d9e3; padding: .3em .8em; text-align: left; }}
  th {{ background: #eef1f6; }}
  td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  td.up {{ color: #067647; }} td.down {{ color: #b42318; }}
  .notice {{ background: #fff4e5; border-left: 5px solid #f79009; padding: .6em 1em; }}
</style>
</head>
<body>
<h1>Stage 1, control and stage 2 on CIRR val</h1>
<p class="notice">Recalls in percent; deltas in points. The control is stage 2 without the
region term (same init, schedule, seed and batches): stage 2 − control isolates the region term,
stage 2 − stage 1 mixes it with the extra epochs. One seed: a sanity check, not a measurement
(the ablation target, `snakemake ablation`, measures over seeds; docs/design.md §11). Best
epochs were chosen on CIRR val too.</p>
<table id="stages">
<thead><tr><th>metric</th><th>stage 1</th><th>control</th><th>stage 2</th>
<th>stage 2 − control</th><th>stage 2 − stage 1</th></tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<h2>Inputs</h2>
<table>{inputs}</table>
</body>
</html>
"""


def build_stage_report(
    comparison_csv: str | Path,
    stage1_json: str | Path,
    stage2_json: str | Path,
    out_html: str | Path,
    control_json: str | Path | None = None,
) -> dict:
    """Write the stage comparison page; the CSV and the metrics files must agree."""
    rows = read_comparison(comparison_csv)
    metrics = {
        "stage1": read_json(stage1_json, "stage-1 metrics"),
        "stage2": read_json(stage2_json, "stage-2 metrics"),
    }
    if control_json:
        metrics["stage2_control"] = read_json(control_json, "control metrics")
    for stage, values in metrics.items():
        if not isinstance(values, dict):
            raise CirflowError(f"{stage} metrics: expected a JSON object")
        for r in rows:
            if r["metric"] not in values:
                raise CirflowError(f"metric {r['metric']!r} missing from the {stage} val_metrics")
            if r[stage] is None or abs(float(values[r["metric"]]) - r[stage]) > 0.005 + 1e-9:
                raise CirflowError(
                    f"{comparison_csv} says {stage} {r['metric']} = {_num(r[stage])} but its "
                    f"val_metrics.json says {values[r['metric']]!r}: stale comparison"
                )
    page = render_stage_page(
        rows,
        metrics,
        {
            "comparison": str(comparison_csv),
            "stage 1": str(stage1_json),
            "stage 2": str(stage2_json),
            **({"control": str(control_json)} if control_json else {}),
        },
    )
    write_text_atomic(out_html, page)
    log.info("stage comparison page written to %s (%d metrics)", out_html, len(rows))
    return {"html": str(out_html), "metrics": len(rows)}
