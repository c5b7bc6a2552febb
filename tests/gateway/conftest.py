"""A small catalogue of two datasets for the pure-function tests (disclosure, query), built the way
the gateway builds its own. The store tests override it with their own."""

from __future__ import annotations

import pytest

from gateway.catalogue import Catalogue

CATALOGUE_DATA = {
    "agencies": {"health": {}, "police": {}},
    "catalogue": {
        "datasets": {
            "ed_visits": {
                "owner": "health",
                "version": 1,
                "dimensions": {
                    "district": {"domain": ["D01", "D02", "D03"]},
                    "age_band": {"domain": ["0-17", "18-64", "65+"]},
                    "sex": {"domain": ["F", "M", "X"]},
                    "presentation": {"domain": ["overdose", "injury", "other"]},
                },
                "measures": {
                    "length_of_stay_hours": {"min": 0, "max": 72},
                    "cost": {"min": 0, "max": 5000},
                },
            },
            "police_incidents": {
                "owner": "police",
                "version": 1,
                "dimensions": {
                    "district": {"domain": ["D01", "D02", "D03"]},
                    "incident_type": {"domain": ["assault", "drugs", "other"]},
                },
            },
        }
    },
}


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.from_data(CATALOGUE_DATA)
