"""The results page (rule results_report): what training and evaluation did, in one
self-contained HTML page.

`inputs` reads and cross-checks the files the page shows (the model side's CSV and JSON files,
the benchmark files, the ablation's summary), `figures` draws the curves and the ablation's
error bars, `retrievals` picks and draws the queries to look at, `page` puts them together.
The package reads files only: it never imports the model side (torch-free).
"""
