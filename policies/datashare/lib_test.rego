# The shared readings every decision module relies on.
package datashare.lib_test

import rego.v1

import data.datashare.lib

test_the_date_of_an_rfc3339_time if {
	lib.date("2026-11-22T23:59:59Z") == "2026-11-22"
}

test_no_date_for_anything_else if {
	not lib.date("22/11/2026")
	not lib.date(1764000000)
	not lib.date(null)
}

test_measure_labels_follow_the_catalogue if {
	lib.measure_labels("ed_visits") == {"subjects", "records", "sum:length_of_stay_hours", "mean:length_of_stay_hours"}
	lib.measure_labels("police_incidents") == {"subjects", "records"}
}

test_a_dataset_outside_the_catalogue_has_no_columns if {
	lib.columns("tax_returns") == set()
}

test_link_terms_match_the_pair_in_either_order if {
	ag := {"filters": ["district"], "linkage": [
		{"datasets": ["ed_visits", "police_incidents"], "max_days": 30},
		{"datasets": ["police_incidents", "ed_visits"], "max_days": 60, "filters": ["incident_type", "presentation"]},
	]}
	lib.link_terms(ag, "ed_visits", "police_incidents") == {"max_days": 60, "filters": {"district", "incident_type"}}
	lib.link_terms(ag, "police_incidents", "ed_visits").max_days == 60
	not lib.link_terms(ag, "ed_visits", "ed_visits")
}

test_terms_intersect_the_agreement_with_the_dataset if {
	ag := {"dimensions": ["district", "month", "presentation"], "measures": ["subjects", "sum:length_of_stay_hours"], "filters": ["presentation", "incident_type"], "k": 20}
	t := lib.terms(ag, "police_incidents")
	t.dimensions == {"district", "month"}
	t.measures == {"subjects"}
	t.filters == {"incident_type"}
	t.k == 20
	t.round_to == 5
	not lib.terms(ag, "tax_returns")
}

test_an_agreement_with_sound_terms_in_force_is_usable if {
	lib.usable(data.agreements["ag-2026-001"], "2026-11-22")
	not lib.usable(data.agreements["ag-2026-001"], "2025-11-22")
	not lib.usable(object.union(data.agreements["ag-2026-001"], {"k": 9}), "2026-11-22")
}

test_terms_below_the_floors_are_problems if {
	lib.unsound_terms({"k": 3, "round_to": 0, "max_cells": 0.5, "max_group_by": "2"}) == {"k", "round_to", "max_cells", "max_group_by"}
	lib.unsound_terms({}) == set()
	lib.term_problems("ag-x", {"k": 9}) == {"agreement ag-x sets k below the consortium floor of 10"}
	lib.term_problems("ag-x", {"round_to": 0}) == {"agreement ag-x sets round_to below 1"}
}
