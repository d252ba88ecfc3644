"""The box validation report: one self-contained HTML page (jinja2 template, matplotlib Agg
plots, images embedded as base64) per box method, or for any box files from the CLI.

The library entry points live in `cirflow.report.boxes_report` (`load_source`,
`build_boxes_report`); this package imports nothing heavy so that `cirflow --help` stays fast.
"""
