"""The per-edit-type table of val_metrics.json (docs/design.md §3), read and printed torch-free
(`cirflow summary` shows it without importing the model side).

    val_metrics.json["per_edit_type"] = {
        "<edit type>": {"recall_at1": %, "recall_at5": %, "group_recall_at1": %, "queries": n},
        ...                                   # in EDIT_TYPES order (cirflow/data/cirr.py)
    }

It is written only where the evaluated split has an edit-type sidecar (the demo). The numbers
come from the same ranks as the overall recalls (`per_edit_type_metrics` in recall.py).
"""

from __future__ import annotations

PER_EDIT_KEY = "per_edit_type"
PER_EDIT_COLUMNS = (("R@1", "recall_at1"), ("R@5", "recall_at5"), ("Rs@1", "group_recall_at1"))


def format_edit_types(
    per_edit: dict,
    chance: dict[str, float] | None = None,
    overall: dict[str, float] | None = None,
    indent: str = "  ",
) -> str:
    """An aligned table: edit type, R@1, R@5, Rs@1, queries; then, if given, the overall
    recalls (`all`) and the chance levels."""
    head = " ".join(f"{label:>7}" for label, _ in PER_EDIT_COLUMNS)
    lines = [f"{indent}{'edit type':<10} {head} {'queries':>8}"]
    for name, m in per_edit.items():
        values = " ".join(f"{m[key]:7.2f}" for _, key in PER_EDIT_COLUMNS)
        lines.append(f"{indent}{name:<10} {values} {m['queries']:8d}")
    total = sum(m["queries"] for m in per_edit.values())
    for name, row, n in (("all", overall, f"{total:8d}"), ("chance", chance, "")):
        if row and all(key in row for _, key in PER_EDIT_COLUMNS):
            values = " ".join(f"{row[key]:7.2f}" for _, key in PER_EDIT_COLUMNS)
            lines.append(f"{indent}{name:<10} {values} {n}".rstrip())
    return "\n".join(lines)
