"""Report pages with PNG plots: the strategy comparison (page.py) and one curation run (run_report.py)."""
