# The decision log's mask (DESIGN §10), as OPA's `system.log.mask`: what of a decision must never
# be stored in the audit log. The gateway evaluates `mask` on every decision with the decision
# event as input (`input.input` the policy input, `input.result` the policy's answer,
# `input.path`, `input.action`), applies the answer before the entry is built, and records the
# pointers in the entry's `erased` / `masked` lists. If this rule errors the request is denied and
# the entry stored without any input (the gateway fails closed; it never stores an unmasked input).
#
# Each member is a JSON pointer under /input or /result to erase, or
# {"op": "upsert", "path": <pointer>, "value": <replacement>}.
#
# The policy inputs the gateway builds carry names only (dataset, dimension and filter names,
# never a filter's value, a token or a row); this rule is the second line: any key that would
# carry a person's identifier or a data value, at any depth under the input, is erased should a
# future request shape (or a bug) ever put one there.
package datashare.log

import rego.v1

identifying_keys := {
	"subject", "subjects", "token", "tokens", "pseudonym", "pseudonyms",
	"identifier", "identifiers", "value", "values", "row", "rows", "records",
}

mask contains pointer if {
	walk(input.input, [path, _])
	count(path) > 0
	identifying_keys[path[count(path) - 1]]
	kept := addressable(path)
	count(kept) > 0
	pointer := concat("/", array.concat(["", "input"], [escaped(part) | some part in kept]))
}

# A key inside a list erases the whole list: erasing list elements by index would shift the
# pointers of the elements after them.
addressable(path) := array.slice(path, 0, min(indexes)) if {
	indexes := {i | some i, part in path; not is_string(part)}
	count(indexes) > 0
} else := path

# RFC 6901: "~" is written "~0" and "/" is written "~1" inside a reference token.
escaped(part) := replace(replace(part, "~", "~0"), "/", "~1")
