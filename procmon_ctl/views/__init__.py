"""Every byte a person or a log shipper reads: tables (render.py), JSON lines
(json_lines.py, json_native.py), the views the reading loop hands records to
(events.py), lineage, run summary and tree, stats/status/doctor text, metrics,
wrapping, and the output schema."""
