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

test_link_windows_match_the_pair_in_either_order if {
	ag := {"linkage": [{"datasets": ["a", "b"], "max_days": 30}, {"datasets": ["b", "a"], "max_days": 60}]}
	lib.link_max_days(ag, "a", "b") == 60
	lib.link_max_days(ag, "b", "a") == 60
	not lib.link_max_days(ag, "a", "c")
}

test_an_agreement_with_sound_terms_in_force_is_usable if {
	lib.usable(data.agreements["ag-2026-001"], "2026-11-22")
	not lib.usable(data.agreements["ag-2026-001"], "2025-11-22")
}

test_terms_below_the_floors_are_problems if {
	problems := lib.term_problems("ag-x", {"k": 3, "round_to": 0, "max_cells": 0, "max_group_by": 0})
	count(problems) == 4
	lib.term_problems("ag-x", {}) == set()
}
