# Who may read the access log: auditors of any consortium agency; admins may only verify it.
package datashare.audit_test

import rego.v1

import data.datashare.audit

auditor := {"agency": "oversight", "role": "auditor", "name": "ada", "id": "spiffe://t/agency/oversight/auditor/ada"}

admin := {"agency": "oversight", "role": "admin", "name": "root", "id": "spiffe://t/agency/oversight/admin/root"}

ask(principal, action) := d if {
	d := audit.decision with input as {"principal": principal, "action": action, "request": {}, "now": "2026-11-22T10:00:00Z"}
}

denied_because(d, reason) if {
	d.allow == false
	reason in d.reasons
}

test_an_auditor_may_take_every_audit_action if {
	every action in ["audit.list", "audit.verify", "audit.export"] {
		ask(auditor, action).allow == true
	}
}

test_an_auditor_of_any_member_agency_may_list if {
	ask(object.union(auditor, {"agency": "health"}), "audit.list").allow == true
}

test_an_admin_may_fetch_the_signed_head_and_checkpoints if {
	ask(admin, "audit.head").allow == true
	ask(admin, "audit.checkpoints").allow == true
	ask(auditor, "audit.head").allow == true
	ask(auditor, "audit.checkpoints").allow == true
}

test_an_admin_may_verify if {
	ask(admin, "audit.verify").allow == true
}

test_an_admin_may_not_list_or_export if {
	denied_because(ask(admin, "audit.list"), "role 'admin' may only verify the access log")
	denied_because(ask(admin, "audit.export"), "role 'admin' may only verify the access log")
}

test_an_analyst_may_not_read_the_log if {
	d := ask(object.union(auditor, {"role": "analyst"}), "audit.list")
	denied_because(d, "role 'analyst' may not read the access log; only auditors may")
}

test_an_agent_may_not_verify_the_log if {
	d := ask(object.union(auditor, {"role": "agent"}), "audit.verify")
	denied_because(d, "role 'agent' may not read the access log; only auditors may")
}

test_an_auditor_of_an_unknown_agency_is_denied if {
	d := ask(object.union(auditor, {"agency": "nobody"}), "audit.list")
	denied_because(d, "agency 'nobody' is not a consortium member")
}

test_an_unknown_action_is_denied if {
	d := ask(auditor, "audit.delete")
	denied_because(d, "action 'audit.delete' is not an audit action")
}

test_an_empty_input_is_denied_with_reasons if {
	d := audit.decision with input as {}
	d.allow == false
	count(d.reasons) > 0
	d.reasons == sort(d.reasons)
}

# --- scope: which agencies' decisions each auditor may see -----------------------------------

health_auditor := object.union(auditor, {"agency": "health", "name": "hilda"})

police_auditor := object.union(auditor, {"agency": "metro-police", "name": "pat"})

test_an_oversight_auditor_sees_every_entry if {
	ask(auditor, "audit.list").obligations.scope == {"all": true}
}

test_an_auditor_of_an_agency_not_listed_sees_their_own_agency_and_its_agreements if {
	d := ask(health_auditor, "audit.list")
	d.obligations.scope == {"all": false, "agencies": ["health"], "agreements": ["ag-2026-001"]}
}

test_an_auditor_sees_agreements_where_their_agency_provides_or_receives if {
	agreements := {
		"ag-provides": {"providing_agencies": ["metro-police"], "receiving_agencies": ["health"]},
		"ag-receives": {"providing_agencies": ["health"], "receiving_agencies": ["metro-police"]},
		"ag-elsewhere": {"providing_agencies": ["health"], "receiving_agencies": ["health"]},
	}
	d := ask(police_auditor, "audit.export") with data.agreements as agreements
	d.obligations.scope.agreements == ["ag-provides", "ag-receives"]
	d.obligations.scope.agencies == ["metro-police"]
}

test_sees_widens_the_scope_to_the_listed_agencies if {
	d := ask(health_auditor, "audit.list") with data.auditors as {"health": {"sees": ["metro-police"]}}
	d.obligations.scope.agencies == ["health", "metro-police"]
	d.obligations.scope.all == false
}

test_sees_all_gives_an_agency_the_whole_log if {
	d := ask(health_auditor, "audit.list") with data.auditors as {"health": {"sees": "all"}}
	d.obligations.scope == {"all": true}
}

test_without_auditor_data_every_auditor_sees_their_own_agency_only if {
	d := ask(auditor, "audit.list") with data.auditors as {}
	d.obligations.scope == {"all": false, "agencies": ["oversight"], "agreements": []}
}

test_a_malformed_sees_falls_back_to_the_own_agency if {
	d := ask(health_auditor, "audit.list") with data.auditors as {"health": {"sees": 7}}
	d.obligations.scope.agencies == ["health"]
}

test_a_denied_decision_carries_no_scope if {
	d := ask(admin, "audit.list")
	d.allow == false
	not d.obligations
}
