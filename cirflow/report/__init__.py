"""The report pages, each one self-contained HTML file (jinja2 templates, matplotlib Agg plots,
images embedded as base64): the box validation report per box method, or for any box files from
the CLI (`cirflow.report.boxes`: `load_source`, `build_boxes_report`), and the results page
(`cirflow.report.results`). This package imports nothing heavy so that `cirflow --help` stays
fast.
"""
