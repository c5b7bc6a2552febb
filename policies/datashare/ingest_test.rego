# Behaviour of the ingest decision against the shipped catalogue: police own police_incidents,
# health owns ed_visits, both at contract version 1.
package datashare.ingest_test

import rego.v1

import data.datashare.ingest

health_agent := {"agency": "health", "role": "agent", "name": "ed-agent", "id": "spiffe://t/agency/health/agent/ed-agent"}

ask(principal, action, dataset, version) := d if {
	d := ingest.decision with input as {
		"principal": principal,
		"action": action,
		"request": {"dataset": dataset, "contract_version": version},
		"now": "2026-11-22T10:00:00Z",
	}
}

denied_because(d, reason) if {
	d.allow == false
	reason in d.reasons
}

test_an_agent_may_push_into_its_own_dataset if {
	d := ask(health_agent, "ingest", "ed_visits", 1)
	d.allow == true
	d.reasons == []
	d.dataset == {"name": "ed_visits", "version": 1}
}

test_an_agent_may_fetch_its_current_contract_with_version_0 if {
	d := ask(health_agent, "get_contract", "ed_visits", 0)
	d.allow == true
	d.dataset.version == 1
}

test_an_agent_may_fetch_its_contract_by_current_version if {
	d := ask(health_agent, "get_contract", "ed_visits", 1)
	d.allow == true
}

test_an_agent_may_not_push_into_another_agencys_dataset if {
	d := ask(health_agent, "ingest", "police_incidents", 1)
	denied_because(d, "dataset 'police_incidents' belongs to agency 'metro-police', not to 'health'")
}

test_an_agent_may_not_fetch_another_agencys_contract if {
	d := ask(health_agent, "get_contract", "police_incidents", 0)
	denied_because(d, "dataset 'police_incidents' belongs to agency 'metro-police', not to 'health'")
}

test_an_analyst_may_not_push if {
	d := ask(object.union(health_agent, {"role": "analyst"}), "ingest", "ed_visits", 1)
	denied_because(d, "role 'analyst' may not push batches or fetch contracts; only agents may")
}

test_an_outdated_contract_version_is_denied if {
	d := ask(health_agent, "ingest", "ed_visits", 1) with data.catalogue.datasets.ed_visits.version as 2
	denied_because(d, "contract version 1 of dataset 'ed_visits' is not the current version 2")
}

test_version_0_does_not_mean_current_for_a_push if {
	d := ask(health_agent, "ingest", "ed_visits", 0)
	denied_because(d, "contract version 0 of dataset 'ed_visits' is not the current version 1")
}

test_a_version_that_is_not_a_number_is_denied if {
	d := ask(health_agent, "ingest", "ed_visits", "1")
	denied_because(d, "request.contract_version must be a whole number")
}

test_an_unknown_dataset_is_denied if {
	d := ask(health_agent, "ingest", "tax_returns", 1)
	denied_because(d, "dataset 'tax_returns' is not in the catalogue")
}

test_an_unknown_agency_is_denied if {
	d := ask(object.union(health_agent, {"agency": "nobody"}), "ingest", "ed_visits", 1)
	denied_because(d, "agency 'nobody' is not a consortium member")
}

test_an_unknown_action_is_denied if {
	d := ask(health_agent, "delete", "ed_visits", 1)
	denied_because(d, "action 'delete' is not handled by the ingest policy")
}

test_an_empty_input_is_denied_with_reasons if {
	d := ingest.decision with input as {}
	d.allow == false
	"request.dataset must name a dataset" in d.reasons
	d.reasons == sort(d.reasons)
}
