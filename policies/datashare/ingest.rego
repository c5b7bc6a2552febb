# Whether an agency's agent may push a batch into a dataset, or fetch its contract (DESIGN §4,
# §5): only an agent, only for a dataset its own agency owns, only at the current contract
# version. For "get_contract", version 0 means "whatever is current".
package datashare.ingest

import rego.v1

actions := {"ingest", "get_contract"}

default decision := {"allow": false, "reasons": ["the ingest policy could not reach a decision"]}

decision := {"allow": true, "reasons": [], "dataset": {"name": dataset, "version": current_version}} if {
	permitted
}

decision := {"allow": false, "reasons": denial_reasons} if not permitted

denial_reasons := sort(reasons) if {
	count(reasons) > 0
} else := ["the request does not meet the dataset's contract"]

request := input.request if is_object(input.request)

default request := {}

principal := input.principal if is_object(input.principal)

default principal := {}

action := text(input, "action")

role := text(principal, "role")

agency := text(principal, "agency")

dataset := text(request, "dataset")

text(obj, key) := value if {
	value := obj[key]
	is_string(value)
} else := ""

member if is_object(data.agencies[agency])

spec := data.catalogue.datasets[dataset] if is_object(data.catalogue.datasets[dataset])

requested_version := object.get(request, "contract_version", null)

current_version := spec.version

# Only up to 2^53 - 1, where floats are exact: past an i64, regorus's round fails where OPA's
# does not, and past 2^53 the two print numbers differently (1e+16 against the digits).
whole_version if {
	is_number(requested_version)
	requested_version >= -9007199254740991
	requested_version <= 9007199254740991
	round(requested_version) == requested_version
}

version_ok if requested_version == current_version

version_ok if {
	action == "get_contract"
	requested_version == 0
}

permitted if {
	count(reasons) == 0
	action in actions
	role == "agent"
	member
	spec.owner == agency
	version_ok
}

reasons contains sprintf("action '%v' is not handled by the ingest policy", [action]) if {
	not action in actions
}

reasons contains sprintf("role '%v' may not push batches or fetch contracts; only agents may", [role]) if {
	role != "agent"
}

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not member

reasons contains "request.dataset must name a dataset" if dataset == ""

reasons contains sprintf("dataset '%v' is not in the catalogue", [dataset]) if {
	not spec
	dataset != ""
}

reasons contains sprintf("dataset '%v' belongs to agency '%v', not to '%v'", [dataset, spec.owner, agency]) if {
	spec.owner != agency
}

reasons contains "request.contract_version must be a whole number" if not whole_version

# round() because regorus prints -0.0 as "-0" and OPA as "0".
reasons contains sprintf("contract version %v of dataset '%v' is not the current version %v", [
	round(requested_version), dataset, current_version,
]) if {
	not version_ok
	whole_version
}
