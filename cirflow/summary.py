"""`cirflow summary RESULTS_DIR`: where a run's outputs are, with the key numbers."""

from __future__ import annotations

import json
from pathlib import Path

from cirflow.boxes.stats import format_seed_summary
from cirflow.errors import CirflowError
from cirflow.evaluate.per_edit import PER_EDIT_KEY, format_edit_types


def summarise(results_dir: str | Path) -> str:
    results = Path(results_dir)
    if not results.is_dir():
        raise CirflowError(f"results folder not found: {results} (run the workflow first)")
    lines = [f"Outputs under {results.resolve()}"]
    for stats_path in sorted(results.glob("boxes/*/*.stats.json")):
        stats = json.loads(stats_path.read_text())
        lines.append("")
        lines.append(
            format_seed_summary(
                stats, title=f"boxes {stats_path.parent.name}/{stats_path.name.split('.')[0]}"
            )
        )
        quality = stats.get("quality")
        if quality:
            lines.append(
                "Quality vs ground truth: recall@0.5 {recall:.3f}, precision@0.5 {precision:.3f}, "
                "mean best IoU {mean_best_iou:.3f}".format(**quality)
            )
    for report in sorted(results.glob("report/*.html")):
        lines.append(f"\nReport: {report}")
    for metrics_path in sorted(results.glob("eval/*/val_metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, (int, float)))
        lines.append(f"\nValidation ({metrics_path.parent.name}): {shown}")
        per_edit = metrics.get(PER_EDIT_KEY)
        if per_edit:
            chance = _chance(metrics_path.with_name("val_details.json"))
            lines.append(f"Per edit type ({metrics_path.parent.name}, %):")
            lines.append(format_edit_types(per_edit, chance, overall=metrics))
    comparison = results / "eval" / "comparison.csv"
    if comparison.exists():
        lines.append(f"\nStages on val ({comparison}):\n{comparison.read_text().rstrip()}")
    return "\n".join(lines)


def _chance(details_path: Path) -> dict | None:
    """The chance levels recorded beside val_metrics.json, if any."""
    try:
        chance = json.loads(details_path.read_text()).get("chance")
    except (OSError, ValueError, AttributeError):
        return None
    return chance if isinstance(chance, dict) else None


def cmd_summary(args) -> int:
    print(summarise(args.results))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("summary", help="print where a run's outputs are and its key numbers")
    p.add_argument("results", nargs="?", default="results/demo", help="results/<dataset> folder")
    p.set_defaults(func=cmd_summary)
