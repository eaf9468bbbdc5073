"""docs/grafana-dashboard.json: every query is valid PromQL (promtool checks it as a
recording rule) and uses only series serve exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from procmon_ctl.kernel.abi import COUNTER_NAMES
from procmon_ctl.process.tally import StreamTally
from procmon_ctl.views.metrics import metric_families, tally_families

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"
# Grafana's variables, as a query would have them filled in.
VARIABLES = {"$__rate_interval": "5m", "$job": ".*"}


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert exprs
    return exprs


class Everything(Collector):
    def collect(self):
        yield from metric_families(dict.fromkeys(COUNTER_NAMES, 0), set(), lambda s: s)
        counted = StreamTally(limit=1).snapshot()
        # A family with no sample has no series: one signal, one errno.
        counted.exit_signals, counted.failed_execs = {9: 1}, {2: 1}
        yield from tally_families(counted, True, lambda s: s)


def exposed_series() -> set[str]:
    registry = CollectorRegistry()
    registry.register(Everything())
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_the_dashboard_uses_only_series_serve_exposes():
    exposed = exposed_series()
    used = {name for expr in queries() for name in re.findall(r"\bprocmon_\w+", expr)}
    assert used, "no procmon series in the dashboard"
    assert used <= exposed, used - exposed


def test_every_dashboard_query_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed: `make test` installs it (apt-get install prometheus)")
    rules = []
    for i, expr in enumerate(queries()):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    # JSON is YAML: no YAML library needed to write the rule file.
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
