"""Test-wide settings: hypothesis keeps no example database in the repository."""

from hypothesis import settings

settings.register_profile("datashare", database=None, deadline=None)
settings.load_profile("datashare")
