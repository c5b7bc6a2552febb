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
