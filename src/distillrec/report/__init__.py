"""Reporting: the terminal summary table, the HTML report with plots, and run comparison.

`summary` and `compare` need only rich; `html` and `plots` need matplotlib (the `report` extra),
so import them as `from distillrec.report.html import write_report`.
"""

from distillrec.report.summary import lift, summary_rows, summary_table

__all__ = ["lift", "summary_rows", "summary_table"]
