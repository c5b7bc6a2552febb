# Who may read, verify and export the policy access log (DESIGN §10): auditors of a consortium
# agency; an admin may also verify the chain, which reveals no entry.
package datashare.audit

import rego.v1

# The roles that may take each action.
roles := {
	"audit.list": {"auditor"},
	"audit.verify": {"auditor", "admin"},
	"audit.export": {"auditor"},
}

default decision := {"allow": false, "reasons": ["the audit policy could not reach a decision"]}

decision := {"allow": true, "reasons": []} if permitted

decision := {"allow": false, "reasons": denial_reasons} if not permitted

denial_reasons := sort(reasons) if {
	count(reasons) > 0
} else := ["the request does not meet the audit policy"]

principal := input.principal if is_object(input.principal)

default principal := {}

action := text(input, "action")

role := text(principal, "role")

agency := text(principal, "agency")

text(obj, key) := value if {
	value := obj[key]
	is_string(value)
} else := ""

member if is_object(data.agencies[agency])

permitted if {
	count(reasons) == 0
	member
	role in roles[action]
}

reasons contains sprintf("action '%v' is not an audit action", [action]) if not roles[action]

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not member

reasons contains "role 'admin' may only verify the access log" if {
	role == "admin"
	roles[action]
	action != "audit.verify"
}

reasons contains sprintf("role '%v' may not read the access log; only auditors may", [role]) if {
	not role in {"auditor", "admin"}
}
