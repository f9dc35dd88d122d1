"""Schemathesis over the app's own OpenAPI document: no 5xx, responses as documented.

The API is served on loopback (``tests.api.live``) over a fresh database and
Schemathesis runs as its command line does (``schemathesis run``): every phase
(examples, coverage, fuzzing, and the stateful phase, which follows the document's
links: start an instance, then read, log, cancel, suspend, resume and retry it) and
every check (``--checks all``: no server errors; status codes, content types, headers
and bodies as documented; positive data accepted and negative data rejected;
unsupported methods answered 405 with ``Allow``; missing headers; use after free;
...). Examples per operation are bounded so a run takes well under a minute.

Where the OpenAPI document cannot say what the API checks, a valid-looking request is
rightly refused; positive-data acceptance is told so for those operations only:

- ``POST /api/v1/definitions``: a schema-shaped document can still break the DSL's
  rules (422), or be a YAML string that is no mapping;
- ``POST /api/v1/instances``: the definition the request names must be deployed (404)
  and the input must satisfy *its* input schema (422);
- ``POST /api/v1/events``: binary mode needs the ``ce-*`` headers together (422), and a
  body must parse in its declared media type (400);
- listings: a cursor must be one the API issued (400).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.api.live import live_api

#: Generated cases per operation and phase; the stateful phase's longest sequence.
MAX_EXAMPLES = 30
MAX_STEPS = 15
#: The longest a run may take before the test gives up on it (a guard, not a measurement).
RUN_GUARD = 300

#: Schemathesis's own default statuses for accepted positive data, which the overrides extend.
DEFAULT = '"2xx", "3xx", "401", "403", "404", "409", "429", "5xx"'

CONFIG = f"""
[generation]
max-examples = {MAX_EXAMPLES}

[phases.stateful]
max-steps = {MAX_STEPS}

[[operations]]
include-name = "POST /api/v1/definitions"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "422"]

[[operations]]
include-name = "POST /api/v1/instances"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "422"]

[[operations]]
include-name = "POST /api/v1/events"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "400", "422"]

[[operations]]
include-name = "GET /api/v1/instances"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "400"]

[[operations]]
include-name = "GET /api/v1/events"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "400"]

[[operations]]
include-name = "GET /api/v1/outbox"
checks.positive_data_acceptance.expected-statuses = [{DEFAULT}, "400"]
"""


def test_schemathesis_finds_nothing(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with live_api(store_url) as base_url:
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{base_url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            "1",
        ]
        # In tmp_path: Schemathesis keeps its example database and reports in the working directory.
        run = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_GUARD, check=False
        )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # The stateful phase ran (it is skipped when no links are found).
    assert re.search(r"✅\s+Stateful \(in", output), output
    assert re.search(r"✅\s+Coverage \(in", output), output
