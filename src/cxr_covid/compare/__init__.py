"""`cxr-covid compare`: recipes x seeds trained on one dataset and judged on external sets.

`recipes` (the named recipes and custom ones), `grid_jobs` (the run-grid jobs, run folder and
estimate), `judging` (figures and tests from probabilities), `report` (result, table, Markdown),
`audits` (`--audit`), `run` (`run_compare`)."""
