# The log mask: identifying keys are erased wherever they appear; names-only inputs pass whole.
package datashare.log_test

import rego.v1

import data.datashare.log

query_input := {
	"principal": {"agency": "health", "role": "analyst", "name": "ann", "id": "spiffe://t/agency/health/analyst/ann"},
	"action": "query",
	"request": {"agreement_id": "ag-2026-001", "dataset": "ed_visits", "filters": ["district"], "group_by": ["district"]},
	"now": "2026-11-22T10:00:00Z",
}

test_a_names_only_input_is_not_masked if {
	count(log.mask) == 0 with input as {"input": query_input, "result": {"allow": true}, "action": "query"}
}

test_values_in_a_request_are_erased if {
	doc := object.union(query_input, {"request": object.union(query_input.request, {"values": ["D01"]})})
	log.mask == {"/input/request/values"} with input as {"input": doc, "result": {}, "action": "query"}
}

test_identifiers_are_erased_at_any_depth if {
	doc := object.union(query_input, {"request": {"link": {"filters": {"subject": "x", "token": "y"}}}})
	log.mask == {"/input/request/link/filters/subject", "/input/request/link/filters/token"} with input as {"input": doc, "result": {}, "action": "query"}
}

test_a_key_inside_a_list_erases_the_whole_list if {
	doc := object.union(query_input, {"request": {"filters": [{"name": "district", "value": "D01"}]}})
	log.mask == {"/input/request/filters"} with input as {"input": doc, "result": {}, "action": "query"}
}

test_a_pointer_escapes_slash_and_tilde if {
	doc := {"request": {"a/b~c": {"value": 1}}}
	log.mask == {"/input/request/a~1b~0c/value"} with input as {"input": doc, "result": {}, "action": "query"}
}
