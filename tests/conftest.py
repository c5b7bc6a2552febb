"""Test-wide hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE`` (default ``datashare``):

- ``datashare``: no example database in the repository, no deadline (2 shared cores), fresh
  random examples each run;
- ``ci`` (what ``.ci/run`` uses): the same, derandomised, so a CI run is repeatable and the
  fuzzers (``-m fuzz``) together stay well under a minute;
- ``fuzz``: a long local hunt, 20x the examples, with failures kept in a database under the
  system temporary directory (never in the repository) so the next run replays them first:
  ``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -m fuzz --timeout=0`` (about half an hour).
"""

import os
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile("datashare", database=None, deadline=None)
settings.register_profile("ci", settings.get_profile("datashare"), derandomize=True)
settings.register_profile(
    "fuzz",
    settings.get_profile("datashare"),
    max_examples=2_000,
    database=DirectoryBasedExampleDatabase(Path(tempfile.gettempdir()) / "datashare-hypothesis"),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "datashare"))
