"""The README's API coverage table (broker/apis/coverage.py) is current, and
Sluice never advertises an API version Apache Kafka 4.4 does not."""
from __future__ import annotations

import json
from pathlib import Path

from broker.apis import load_all
from broker.apis.coverage import REFERENCE, render, table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_current():
    text = README.read_text()
    assert render(text) == text, "stale: run python -m broker.apis.coverage --write README.md"


def test_table_accounts_for_every_kafka_api():
    kafka = json.loads(REFERENCE.read_text())["apis"]
    rows = [line for line in table().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows][:len(kafka)] == [a["key"] for a in kafka]


def test_no_version_beyond_kafkas():
    served = load_all()
    for a in json.loads(REFERENCE.read_text())["apis"]:
        ours = served.get(a["key"])
        if ours is not None:
            assert a["min"] <= ours.min_version <= ours.max_version <= a["max"], a["name"]
    assert served[22].max_version == 5       # InitProducerId v6 is unstable in the spec: not advertised
