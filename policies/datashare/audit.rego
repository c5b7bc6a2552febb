# Who may read, verify and export the policy access log (DESIGN §10): auditors of a consortium
# agency; an admin may also verify the chain, which reveals no entry.
package datashare.audit

import rego.v1

import data.datashare.lib

# The roles that may take each action.
roles := {
	"audit.list": {"auditor"},
	"audit.verify": {"auditor", "admin"},
	"audit.export": {"auditor"},
}

actions := {name | some name, _ in roles}

default decision := {"allow": false, "reasons": ["the audit policy could not reach a decision"]}

decision := {"allow": true, "reasons": []} if permitted

decision := {"allow": false, "reasons": denial_reasons} if not permitted

denial_reasons := sort(reasons) if {
	count(reasons) > 0
} else := ["the request does not meet the audit policy"]

action := lib.text(input, "action")

principal := object.get(input, "principal", {})

role := lib.text(principal, "role")

agency := lib.text(principal, "agency")

permitted if {
	count(reasons) == 0
	action in actions
	lib.member(agency)
	role in roles[action]
}

reasons contains sprintf("action '%v' is not an audit action", [action]) if not action in actions

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not lib.member(agency)

reasons contains "role 'admin' may only verify the access log" if {
	role == "admin"
	action in actions
	action != "audit.verify"
}

reasons contains sprintf("role '%v' may not read the access log; only auditors may", [role]) if {
	not role in {"auditor", "admin"}
}
