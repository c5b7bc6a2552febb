# Who may read, verify and export the policy access log (DESIGN §10): auditors of a consortium
# agency; an admin may also verify the chain, which reveals no entry.
#
# What an auditor may read is scoped by agency (data.auditors, policies/auditors/data.yaml): their
# own agency, the agencies listed under `sees`, or every entry for `sees: all` (an oversight
# body). An allowed decision carries the scope as an obligation, which the gateway applies as a
# filter in the store query of list and export:
#
#     {"scope": {"all": true}}
#     {"scope": {"all": false, "agencies": [...], "agreements": [...]}}
#
# The rule: an entry is in scope when the agency of the principal who made the request is in
# scope, or when it was made under an agreement (agreement_id) one of whose providing or
# receiving agencies is in scope. So a health auditor sees health's own requests and every
# decision under an agreement health is party to, whoever asked. An entry under an agreement the
# bundle no longer holds is in scope by its principal's agency only; entries of refused callers
# with no agency are in the `all` scope only. Verify is not scoped: it recomputes the whole chain
# and reveals hashes, never entries.
package datashare.audit

import rego.v1

# The roles that may take each action.
roles := {
	"audit.list": {"auditor"},
	"audit.verify": {"auditor", "admin"},
	"audit.export": {"auditor"},
	# the signed chain head and checkpoints: hashes and signatures only, no entry (verifying)
	"audit.head": {"auditor", "admin"},
	"audit.checkpoints": {"auditor", "admin"},
}

# What an admin may do: whatever shows hashes and signatures, never an entry.
verifying_actions := {"audit.verify", "audit.head", "audit.checkpoints"}

default decision := {"allow": false, "reasons": ["the audit policy could not reach a decision"]}

decision := {"allow": true, "reasons": [], "obligations": {"scope": scope}} if permitted

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
	not action in verifying_actions
}

reasons contains sprintf("role '%v' may not read the access log; only auditors may", [role]) if {
	not role in {"auditor", "admin"}
}

# --- the scope of what the auditor may read --------------------------------------------------

default sees := []

sees := data.auditors[agency].sees

default sees_all := false

sees_all if sees == "all"

scope := {"all": true} if sees_all

scope := {"all": false, "agencies": sort(scope_agencies), "agreements": sort(scope_agreements)} if {
	not sees_all
}

scope_agencies := {agency} | {a |
	is_array(sees)
	some a in sees
	is_string(a)
}

scope_agreements := {id |
	is_object(data.agreements)
	some id, ag in data.agreements
	is_object(ag)
	some key in ["providing_agencies", "receiving_agencies"]
	parties := ag[key]
	is_array(parties)
	some party in parties
	party in scope_agencies
}
