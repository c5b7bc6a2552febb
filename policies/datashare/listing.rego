# What the calling analyst may query (DESIGN §7 ListDatasets): one entry per dataset of every
# active, in-force agreement its agency receives, with the terms a query will be held to. The
# entries come from the same lib rules the query decision uses, so a listed measure, dimension
# or filter is one the query policy allows.
package datashare.listing

import rego.v1

import data.datashare.lib

default datasets := []

# Sorted by agreement id, then dataset: built from sorted [id, dataset] pairs rather than by
# sorting objects, whose ordering engines need not agree on.
datasets := [entry(pair[0], pair[1]) | some pair in pairs]

pairs := sort({[id, ds] |
	lib.text(input, "action") == "list_datasets"
	principal := object.get(input, "principal", {})
	lib.text(principal, "role") == "analyst"
	agency := lib.text(principal, "agency")
	lib.member(agency)
	today := lib.date(object.get(input, "now", ""))
	is_object(data.agreements)
	some id, ag in data.agreements
	is_object(ag)
	lib.usable(ag, today)
	agency in lib.list(ag, "receiving_agencies")
	some ds in lib.list(ag, "datasets")
	lib.provided(ag, ds)
})

entry(id, ds) := {
	"agreement_id": id,
	"agreement_title": lib.text(ag, "title"),
	"purposes": sort(lib.list(ag, "purposes")),
	"dataset": ds,
	"dimensions": sort(lib.allowed_dimensions(ag, ds)),
	"measures": sort(lib.allowed_measures(ag, ds)),
	"filters": sort(lib.allowed_filters(ag, ds)),
	"k": lib.k(ag),
	"round_to": lib.round_to(ag),
	"max_cells": lib.max_cells(ag),
	"max_group_by": lib.max_group_by(ag),
} if {
	ag := lib.agreement(id)
}
