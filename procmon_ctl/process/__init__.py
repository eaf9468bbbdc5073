"""State from records, no text: records decoded (decode.py), the one /proc reader,
table rows and filters, lineage, the process tree and summary of a `run`, cgroups
and containers, kernel clock to wall clock."""
