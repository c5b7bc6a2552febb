# Behaviour of the query decision against the shipped agreement ag-2026-001 (health receives
# police and ED data for overdose prevention), with agreement terms varied through `with`.
package datashare.query_test

import rego.v1

import data.datashare.query

now := "2026-11-22T10:00:00Z"

health_analyst := {"agency": "health", "role": "analyst", "name": "ann", "id": "spiffe://t/agency/health/analyst/ann"}

police_analyst := {"agency": "metro-police", "role": "analyst", "name": "bob", "id": "spiffe://t/agency/metro-police/analyst/bob"}

base_request := {
	"agreement_id": "ag-2026-001",
	"purpose": "overdose-prevention",
	"dataset": "ed_visits",
	"measures": ["subjects", "sum:length_of_stay_hours"],
	"group_by": ["district", "month"],
	"filters": ["presentation"],
	"months": {"first": "2026-01", "last": "2026-06"},
	"link": null,
}

police_link := {"dataset": "police_incidents", "days_before": 30, "days_after": 0, "filters": ["incident_type"]}

shipped := data.agreements["ag-2026-001"]

# The query input of an analyst asking for base_request with some fields replaced.
ask(principal, changes) := {
	"principal": principal,
	"action": "query",
	"request": object.union(base_request, changes),
	"now": now,
}

decide(principal, changes) := d if {
	d := query.decision with input as ask(principal, changes)
}

# The same, with the gateway's report of the agreement's query budget use (input.usage).
decide_used(principal, changes, usage) := d if {
	d := query.decision with input as object.union(ask(principal, changes), {"usage": usage})
}

denied_because(d, reason) if {
	d.allow == false
	reason in d.reasons
}

# --- allow -----------------------------------------------------------------------------------

test_health_analyst_is_allowed_with_the_agreement_terms if {
	d := decide(health_analyst, {})
	d.allow == true
	d.reasons == []
	d.agreement == {"id": "ag-2026-001", "title": shipped.title}
	d.obligations.k == 10
	d.obligations.round_to == 5
	d.obligations.max_cells == 2000
	d.obligations.max_group_by == 3
	d.obligations.measures == ["records", "subjects", "sum:length_of_stay_hours"]
	d.obligations.dimensions == ["age_band", "district", "month", "quarter", "sex", "year"]
	d.obligations.filters == ["age_band", "district", "presentation", "sex"]
}

test_obligations_default_to_k_10_and_rounding_to_5 if {
	terms := object.remove(shipped, ["k", "round_to", "max_cells", "max_group_by"])
	d := decide(health_analyst, {"group_by": ["district"]}) with data.agreements["ag-2026-001"] as terms
	d.allow == true
	d.obligations.k == 10
	d.obligations.round_to == 5
	d.obligations.max_cells == 1000
	d.obligations.max_group_by == 2
}

test_obligations_default_to_the_2_85_dominance_rule_and_withheld_zeros if {
	terms := object.remove(shipped, ["dominance", "zeros"])
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"] as terms
	d.allow == true
	d.obligations.dominance == {"n": 2, "percent": 85}
	d.obligations.zeros == "withhold"
}

test_obligations_carry_the_agreements_dominance_rule_and_zeros_choice if {
	terms := object.union(shipped, {"dominance": {"n": 1, "percent": 60}, "zeros": "show"})
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"] as terms
	d.allow == true
	d.obligations.dominance == {"n": 1, "percent": 60}
	d.obligations.zeros == "show"
}

test_obligations_carry_a_k_above_the_floor if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].k as 25
	d.allow == true
	d.obligations.k == 25
}

test_police_dataset_measures_exclude_sums if {
	d := decide(health_analyst, {"dataset": "police_incidents", "measures": ["records"], "filters": ["incident_type"]})
	d.allow == true
	d.obligations.measures == ["records", "subjects"]
	d.obligations.filters == ["age_band", "district", "incident_type", "sex"]
}

test_link_within_the_window_is_allowed if {
	d := decide(health_analyst, {"link": police_link})
	d.allow == true
}

test_link_at_the_edge_of_the_window_is_allowed if {
	d := decide(health_analyst, {"link": object.union(police_link, {"days_before": 90, "days_after": 90})})
	d.allow == true
}

test_link_in_either_order_is_allowed if {
	link := {"dataset": "ed_visits", "days_before": 0, "days_after": 30, "filters": ["presentation"]}
	d := decide(health_analyst, {"dataset": "police_incidents", "measures": ["subjects"], "filters": [], "link": link})
	d.allow == true
}

test_first_and_last_day_of_validity_are_in_force if {
	first := query.decision with input as object.union(ask(health_analyst, {}), {"now": "2026-01-01T00:00:00Z"})
	first.allow == true
	last := query.decision with input as object.union(ask(health_analyst, {}), {"now": "2028-12-31T23:59:59Z"})
	last.allow == true
}

# --- who asks --------------------------------------------------------------------------------

test_police_analyst_is_not_a_receiving_party if {
	d := decide(police_analyst, {})
	denied_because(d, "agency 'metro-police' is not a receiving party of ag-2026-001")
	not d.obligations
}

test_an_agent_may_not_query if {
	d := decide(object.union(health_analyst, {"role": "agent"}), {})
	denied_because(d, "role 'agent' may not run aggregate queries; only analysts may")
}

test_an_auditor_may_not_query if {
	d := decide(object.union(health_analyst, {"role": "auditor"}), {})
	denied_because(d, "role 'auditor' may not run aggregate queries; only analysts may")
}

test_an_unknown_agency_is_denied if {
	d := decide(object.union(health_analyst, {"agency": "nobody"}), {})
	denied_because(d, "agency 'nobody' is not a consortium member")
}

test_another_action_is_denied if {
	d := query.decision with input as object.union(ask(health_analyst, {}), {"action": "ingest"})
	denied_because(d, "action 'ingest' is not an aggregate query")
}

# --- the agreement ---------------------------------------------------------------------------

test_an_unknown_agreement_is_denied_without_agreement_details if {
	d := decide(health_analyst, {"agreement_id": "ag-1999-999"})
	denied_because(d, "agreement 'ag-1999-999' does not exist")
	not d.agreement
}

test_a_suspended_agreement_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].status as "suspended"
	denied_because(d, "agreement ag-2026-001 is suspended")
	d.agreement.id == "ag-2026-001"
}

test_a_revoked_agreement_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].status as "revoked"
	denied_because(d, "agreement ag-2026-001 was revoked")
}

test_a_draft_agreement_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].status as "draft"
	denied_because(d, "agreement ag-2026-001 is a draft, not yet in force")
}

test_an_expired_agreement_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].valid_until as "2025-12-31"
	denied_because(d, "agreement ag-2026-001 expired on 2025-12-31")
}

test_an_agreement_not_yet_in_force_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].valid_from as "2027-01-01"
	denied_because(d, "agreement ag-2026-001 is not in force until 2027-01-01")
}

test_the_day_after_validity_is_expired if {
	d := query.decision with input as object.union(ask(health_analyst, {}), {"now": "2029-01-01T00:00:00Z"})
	denied_because(d, "agreement ag-2026-001 expired on 2028-12-31")
}

test_a_k_below_the_floor_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].k as 5
	denied_because(d, "agreement ag-2026-001 sets k below the consortium floor of 10")
}

test_a_k_that_is_not_a_number_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].k as "50"
	denied_because(d, "agreement ag-2026-001 sets k below the consortium floor of 10")
}

test_rounding_below_1_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].round_to as 0
	denied_because(d, "agreement ag-2026-001 sets round_to below 1")
}

test_a_wrong_purpose_is_denied if {
	d := decide(health_analyst, {"purpose": "marketing"})
	denied_because(d, "purpose 'marketing' is not a purpose of ag-2026-001")
}

# --- datasets --------------------------------------------------------------------------------

test_a_dataset_outside_the_agreement_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].datasets as ["police_incidents"]
	denied_because(d, "dataset 'ed_visits' is not covered by ag-2026-001")
}

test_a_dataset_of_a_non_providing_agency_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].providing_agencies as ["metro-police"]
	denied_because(d, "dataset 'ed_visits' is owned by 'health', which is not a providing party of ag-2026-001")
}

test_an_unknown_dataset_is_denied if {
	d := decide(health_analyst, {"dataset": "tax_returns"})
	denied_because(d, "dataset 'tax_returns' is not in the catalogue")
}

# --- measures, grouping, filters -------------------------------------------------------------

test_a_measure_the_agreement_omits_is_denied if {
	d := decide(health_analyst, {"measures": ["mean:length_of_stay_hours"]})
	denied_because(d, "measure 'mean:length_of_stay_hours' is not allowed by ag-2026-001")
}

test_a_measure_the_dataset_lacks_is_denied if {
	d := decide(health_analyst, {"dataset": "police_incidents", "filters": [], "measures": ["sum:length_of_stay_hours"]})
	denied_because(d, "measure 'sum:length_of_stay_hours' does not exist in dataset 'police_incidents'")
}

test_a_query_without_measures_is_denied if {
	d := decide(health_analyst, {"measures": []})
	denied_because(d, "the query names no measure")
}

test_grouping_by_a_forbidden_dimension_is_denied if {
	d := decide(health_analyst, {"dataset": "police_incidents", "measures": ["subjects"], "filters": [], "group_by": ["incident_type"]})
	denied_because(d, "grouping by 'incident_type' is not allowed by ag-2026-001")
}

test_grouping_by_a_dimension_the_dataset_lacks_is_denied if {
	d := decide(health_analyst, {"group_by": ["incident_type"]})
	denied_because(d, "dataset 'ed_visits' has no dimension 'incident_type' to group by")
}

test_too_many_group_by_dimensions_are_denied if {
	d := decide(health_analyst, {"group_by": ["district", "month", "sex", "age_band"]})
	denied_because(d, "the query groups by 4 dimensions; ag-2026-001 allows at most 3")
}

test_as_many_group_by_dimensions_as_allowed_pass if {
	d := decide(health_analyst, {"group_by": ["district", "month", "sex"]})
	d.allow == true
}

test_a_repeated_group_by_dimension_is_denied if {
	d := decide(health_analyst, {"group_by": ["district", "district"]})
	denied_because(d, "dimension 'district' is grouped by more than once")
}

test_a_forbidden_filter_is_denied if {
	d := decide(health_analyst, {"filters": ["sex"]}) with data.agreements["ag-2026-001"].filters as ["district"]
	denied_because(d, "filtering on 'sex' is not allowed by ag-2026-001")
}

test_a_filter_the_dataset_lacks_is_denied if {
	d := decide(health_analyst, {"filters": ["incident_type"]})
	denied_because(d, "dataset 'ed_visits' has no dimension 'incident_type' to filter on")
}

# --- links -----------------------------------------------------------------------------------

test_a_link_too_far_before_is_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"days_before": 91})})
	denied_because(d, "the link window of 91 days before the event exceeds the 90 days ag-2026-001 allows")
}

test_a_link_too_far_after_is_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"days_after": 365})})
	denied_because(d, "the link window of 365 days after the event exceeds the 90 days ag-2026-001 allows")
}

test_a_negative_link_window_is_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"days_before": -1})})
	denied_because(d, "request.link.days_before must be a whole number of days, 0 or more")
}

test_a_link_without_a_linkage_entry_is_denied if {
	d := decide(health_analyst, {"link": police_link}) with data.agreements["ag-2026-001"].linkage as []
	denied_because(d, "linking 'ed_visits' with 'police_incidents' is not allowed by ag-2026-001")
}

test_a_link_to_a_dataset_outside_the_agreement_is_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"dataset": "tax_returns", "filters": []})})
	denied_because(d, "dataset 'tax_returns' is not in the catalogue")
	denied_because(d, "linking 'ed_visits' with 'tax_returns' is not allowed by ag-2026-001")
}

test_a_link_filter_outside_the_linkage_entry_is_denied if {
	entry := {"datasets": ["ed_visits", "police_incidents"], "max_days": 90, "filters": ["district"]}
	d := decide(health_analyst, {"link": police_link}) with data.agreements["ag-2026-001"].linkage as [entry]
	denied_because(d, "link filter 'incident_type' is not allowed by ag-2026-001")
}

test_a_link_filter_the_linked_dataset_lacks_is_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"filters": ["presentation"]})})
	denied_because(d, "dataset 'police_incidents' has no dimension 'presentation' to filter on")
}

# --- malformed input: always a deny with reasons, never undefined ----------------------------

test_an_empty_input_is_denied_with_reasons if {
	d := query.decision with input as {}
	d.allow == false
	"the request time (now) is missing or not an RFC 3339 time" in d.reasons
	"request.agreement_id must name an agreement" in d.reasons
}

test_wrongly_typed_fields_are_denied_with_reasons if {
	d := query.decision with input as {
		"principal": "root",
		"action": "query",
		"now": 7,
		"request": {"measures": "subjects", "group_by": {"a": 1}, "filters": [1], "link": 5, "months": 3},
	}
	d.allow == false
	"request.measures must be a list of names" in d.reasons
	"request.group_by must be a list of names" in d.reasons
	"request.filters must be a list of names" in d.reasons
	"request.link must be null or a link" in d.reasons
	"request.months must be null or a range with first and last" in d.reasons
}

test_a_request_that_is_not_an_object_is_denied if {
	d := query.decision with input as {"principal": health_analyst, "action": "query", "request": [1], "now": now}
	d.allow == false
	count(d.reasons) > 0
}

test_reasons_are_sorted if {
	d := decide(police_analyst, {"purpose": "x", "group_by": ["a", "b", "c", "d"]})
	count(d.reasons) > 3
	d.reasons == sort(d.reasons)
}

# The allow check and the reasons are two statements of one policy: an allowed query has none.
test_allowed_queries_have_no_reasons_to_deny if {
	every changes in [{}, {"link": police_link}, {"dataset": "police_incidents", "measures": ["records"], "filters": ["incident_type"]}] {
		count(query.reasons) == 0 with input as ask(health_analyst, changes)
		query.permitted with input as ask(health_analyst, changes)
	}
}

test_a_request_without_purpose_or_dataset_is_denied if {
	d := decide(health_analyst, {"purpose": "", "dataset": ""})
	denied_because(d, "request.purpose must name a purpose")
	denied_because(d, "request.dataset must name a dataset")
}

test_a_link_without_a_dataset_is_denied if {
	d := decide(health_analyst, {"link": object.remove(police_link, ["dataset"])})
	denied_because(d, "request.link.dataset must name a dataset")
}

test_link_filters_that_are_not_names_are_denied if {
	d := decide(health_analyst, {"link": object.union(police_link, {"filters": "incident_type"})})
	denied_because(d, "request.link.filters must be a list of names")
}

test_an_agreement_without_status_or_dates_is_denied if {
	terms := object.remove(shipped, ["status", "valid_from", "valid_until"])
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"] as terms
	denied_because(d, "agreement ag-2026-001 has no status")
	denied_because(d, "agreement ag-2026-001 has no valid dates")
}

# --- combinations, purposes, obligations ----------------------------------------------------

test_a_forbidden_combination_is_denied_naming_both_dimensions if {
	d := decide(health_analyst, {"group_by": ["age_band", "district"]})
	denied_because(d, "dimension 'age_band' is not allowed with 'district' under ag-2026-001")
}

test_a_forbidden_combination_is_denied_whatever_else_is_grouped if {
	d := decide(health_analyst, {"group_by": ["month", "district", "age_band"]})
	denied_because(d, "dimension 'age_band' is not allowed with 'district' under ag-2026-001")
}

test_each_dimension_of_a_forbidden_combination_is_allowed_alone if {
	decide(health_analyst, {"group_by": ["age_band", "month"]}).allow == true
	decide(health_analyst, {"group_by": ["district", "sex", "month"]}).allow == true
}

test_a_forbidden_triple_is_named_in_full if {
	combos := [["sex", "district", "month"]]
	d := decide(health_analyst, {"group_by": ["district", "month", "sex"]}) with data.agreements["ag-2026-001"].forbidden_combinations as combos
	denied_because(d, "dimensions 'sex', 'district', 'month' may not be grouped by together under ag-2026-001")
	decide(health_analyst, {"group_by": ["district", "month"]}).allow == true with data.agreements["ag-2026-001"].forbidden_combinations as combos
}

test_malformed_forbidden_combinations_deny if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].forbidden_combinations as "age_band"
	denied_because(d, "agreement ag-2026-001: forbidden_combinations must be a list of lists of dimensions")
}

test_a_purpose_missing_from_the_catalogue_is_denied_even_if_the_agreement_lists_it if {
	purposes := ["overdose-prevention", "curiosity"]
	d := decide(health_analyst, {"purpose": "curiosity"}) with data.agreements["ag-2026-001"].purposes as purposes
	denied_because(d, "purpose 'curiosity' is not in the consortium's purpose catalogue")
}

test_a_catalogued_purpose_outside_the_agreement_is_denied if {
	d := decide(health_analyst, {"purpose": "service-planning"})
	denied_because(d, "purpose 'service-planning' is not a purpose of ag-2026-001")
}

test_obligations_carry_clamp_bounds_of_summed_measures if {
	d := decide(health_analyst, {})
	d.obligations.clamp == {"length_of_stay_hours": {"min": 0, "max": 72}}
	decide(health_analyst, {"measures": ["subjects"]}).obligations.clamp == {}
}

test_obligations_carry_noise_and_budget_or_null if {
	d := decide(health_analyst, {})
	d.obligations.noise == null
	d.obligations.budget == null
	budget := {"queries": 200, "period": "month"}
	noise := {"epsilon": 0.5, "budget": 10, "period": "year"}
	e := decide_used(health_analyst, {}, {"queries_this_period": 0}) with data.agreements["ag-2026-001"].query_budget as budget
		with data.agreements["ag-2026-001"].noise as noise
	e.obligations.budget == budget
	e.obligations.noise == noise
}

test_an_unknown_status_is_named if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].status as "paused"
	denied_because(d, "agreement ag-2026-001 has status 'paused', not active")
}

# --- query budget ----------------------------------------------------------------------------

monthly_budget := {"queries": 50, "period": "month"}

usage_of(n) := {"queries_this_period": n, "period": "2026-11", "renews_on": "2026-12-01"}

test_a_query_within_the_budget_is_allowed if {
	d := decide_used(health_analyst, {}, usage_of(49)) with data.agreements["ag-2026-001"].query_budget as monthly_budget
	d.allow == true
	d.obligations.budget == monthly_budget
}

test_a_query_over_the_budget_is_denied_saying_when_it_renews if {
	d := decide_used(health_analyst, {}, usage_of(50)) with data.agreements["ag-2026-001"].query_budget as monthly_budget
	denied_because(d, "agreement ag-2026-001 has used its 50 queries for 2026-11; the budget renews on 2026-12-01")
	count(d.reasons) == 1
}

test_a_budget_without_reported_usage_is_denied if {
	d := decide(health_analyst, {}) with data.agreements["ag-2026-001"].query_budget as monthly_budget
	denied_because(d, "the use of the query budget of ag-2026-001 was not reported, so it cannot be checked")
}

test_usage_without_period_words_still_denies_with_a_reason if {
	d := decide_used(health_analyst, {}, {"queries_this_period": 51}) with data.agreements["ag-2026-001"].query_budget as monthly_budget
	denied_because(d, "agreement ag-2026-001 has used its 50 queries for this period")
}

test_usage_is_ignored_without_a_budget if {
	decide_used(health_analyst, {}, usage_of(1000)).allow == true
}

test_a_budget_without_a_number_of_queries_is_denied if {
	d := decide_used(health_analyst, {}, usage_of(0)) with data.agreements["ag-2026-001"].query_budget as {"period": "month"}
	denied_because(d, "agreement ag-2026-001: query_budget must set a number of queries")
}
