# Whether an agency's agent may push a batch into a dataset, or fetch its contract (DESIGN §4,
# §5): only an agent, only into a dataset its own agency owns, only at the current contract
# version. For "get_contract", version 0 means "whatever is current".
package datashare.ingest

import rego.v1

import data.datashare.lib

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

action := lib.text(input, "action")

principal := object.get(input, "principal", {})

role := lib.text(principal, "role")

agency := lib.text(principal, "agency")

dataset := lib.text(request, "dataset")

requested_version := object.get(request, "contract_version", null)

current_version := lib.dataset(dataset).version

permitted if {
	count(reasons) == 0
	action in actions
	role == "agent"
	lib.member(agency)
	lib.owner(dataset) == agency
	version_ok
}

version_ok if requested_version == current_version

version_ok if {
	action == "get_contract"
	requested_version == 0
}

reasons contains sprintf("action '%v' is not handled by the ingest policy", [action]) if {
	not action in actions
}

reasons contains sprintf("role '%v' may not push batches or fetch contracts; only agents may", [role]) if {
	role != "agent"
}

reasons contains sprintf("agency '%v' is not a consortium member", [agency]) if not lib.member(agency)

reasons contains "request.dataset must name a dataset" if dataset == ""

reasons contains sprintf("dataset '%v' is not in the catalogue", [dataset]) if {
	dataset != ""
	not lib.dataset(dataset)
}

reasons contains sprintf("dataset '%v' belongs to agency '%v', not to '%v'", [dataset, owner, agency]) if {
	owner := lib.owner(dataset)
	owner != agency
}

reasons contains "request.contract_version must be a whole number" if not lib.whole_number(requested_version)

reasons contains sprintf("contract version %v of dataset '%v' is not the current version %v", [
	requested_version, dataset, current_version,
]) if {
	lib.whole_number(requested_version)
	not version_ok
}
