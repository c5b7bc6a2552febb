# What ListDatasets shows: one entry per dataset of every usable agreement the analyst's agency
# receives, sorted by agreement then dataset, with the same terms the query decision enforces.
package datashare.listing_test

import rego.v1

import data.datashare.listing
import data.datashare.query

health_analyst := {"agency": "health", "role": "analyst", "name": "ann", "id": "spiffe://t/agency/health/analyst/ann"}

police_analyst := {"agency": "metro-police", "role": "analyst", "name": "bob", "id": "spiffe://t/agency/metro-police/analyst/bob"}

now := "2026-11-22T10:00:00Z"

shipped := data.agreements["ag-2026-001"]

list_for(principal) := l if {
	l := listing.datasets with input as {"principal": principal, "action": "list_datasets", "now": now}
}

test_health_analyst_sees_both_datasets_of_the_agreement if {
	l := list_for(health_analyst)
	[e.dataset | some e in l] == ["ed_visits", "police_incidents"]
	every e in l {
		e.agreement_id == "ag-2026-001"
		e.agreement_title == shipped.title
		e.purposes == ["overdose-prevention"]
		e.k == 10
		e.round_to == 5
		e.max_cells == 2000
		e.max_group_by == 3
		e.dimensions == ["age_band", "district", "month", "quarter", "sex", "year"]
	}
}

test_each_entry_lists_only_what_its_dataset_has if {
	l := list_for(health_analyst)
	l[0].measures == ["records", "subjects", "sum:length_of_stay_hours"]
	l[0].filters == ["age_band", "district", "presentation", "sex"]
	l[1].measures == ["records", "subjects"]
	l[1].filters == ["age_band", "district", "incident_type", "sex"]
}

test_police_analyst_sees_nothing if {
	list_for(police_analyst) == []
}

test_other_roles_see_nothing if {
	every role in ["agent", "auditor", "admin"] {
		list_for(object.union(health_analyst, {"role": role})) == []
	}
}

test_an_unknown_agency_sees_nothing if {
	list_for(object.union(health_analyst, {"agency": "nobody"})) == []
}

test_another_action_lists_nothing if {
	l := listing.datasets with input as {"principal": health_analyst, "action": "query", "now": now}
	l == []
}

test_a_suspended_agreement_is_not_listed if {
	l := list_for(health_analyst) with data.agreements["ag-2026-001"].status as "suspended"
	l == []
}

test_an_expired_agreement_is_not_listed if {
	l := list_for(health_analyst) with data.agreements["ag-2026-001"].valid_until as "2026-06-30"
	l == []
}

test_an_agreement_below_the_k_floor_is_not_listed if {
	l := list_for(health_analyst) with data.agreements["ag-2026-001"].k as 9
	l == []
}

test_a_dataset_of_a_non_providing_agency_is_not_listed if {
	l := list_for(health_analyst) with data.agreements["ag-2026-001"].providing_agencies as ["health"]
	[e.dataset | some e in l] == ["ed_visits"]
}

test_entries_are_sorted_by_agreement_then_dataset if {
	earlier := object.union(shipped, {"title": "Earlier", "datasets": ["police_incidents", "ed_visits"]})
	agreements := {"ag-2026-002": shipped, "ag-2025-010": earlier}
	l := list_for(health_analyst) with data.agreements as agreements
	[[e.agreement_id, e.dataset] | some e in l] == [
		["ag-2025-010", "ed_visits"],
		["ag-2025-010", "police_incidents"],
		["ag-2026-002", "ed_visits"],
		["ag-2026-002", "police_incidents"],
	]
}

test_defaults_apply_when_the_agreement_omits_terms if {
	terms := object.remove(shipped, ["k", "round_to", "max_cells", "max_group_by"])
	l := list_for(health_analyst) with data.agreements["ag-2026-001"] as terms
	l[0].k == 10
	l[0].round_to == 5
	l[0].max_cells == 1000
	l[0].max_group_by == 2
}

# Whatever the listing offers, the query decision allows: the two read agreements one way.
test_every_listed_measure_dimension_and_filter_is_allowed_by_the_query_policy if {
	every e in list_for(health_analyst) {
		every m in e.measures {
			allowed(e, {"measures": [m]})
		}
		every d in e.dimensions {
			allowed(e, {"group_by": [d]})
		}
		every f in e.filters {
			allowed(e, {"filters": [f]})
		}
	}
}

allowed(e, changes) if {
	base := {
		"agreement_id": e.agreement_id,
		"purpose": e.purposes[0],
		"dataset": e.dataset,
		"measures": ["subjects"],
		"group_by": [],
		"filters": [],
		"months": null,
		"link": null,
	}
	inp := {"principal": health_analyst, "action": "query", "request": object.union(base, changes), "now": now}
	d := query.decision with input as inp
	d.allow == true
}
