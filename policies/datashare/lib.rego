# The consortium's shared reading of its data: what an agreement allows on a dataset, whether it
# is in force, and the floors no agreement can lower (DESIGN §8, §9). The query decision and the
# listing both read agreements through these functions, so they cannot disagree.
#
# Portability: regorus raises an error where OPA is merely undefined (iterating something that
# is not a collection, a builtin given the wrong type), so values are type-checked before they
# are iterated or passed to builtins. Dates are compared as "YYYY-MM-DD" strings, and sprintf
# uses only %v, so OPA and regorus decide alike.
#
# Speed: with regorus a function call costs about as much as ten simple expressions and is not
# memoised, while rules are computed once per decision; and a rule of this package referenced
# through `import data.datashare.lib` evaluates the whole package. So other modules call a few
# coarse functions here (terms, link_terms), keep the results in rules of their own, and never
# reference this package's rules.
package datashare.lib

import rego.v1

# The consortium's floor on k, and the defaults when an agreement says nothing (DESIGN §9).
k_floor := 10

default_k := 10

default_round_to := 5

# Not set by DESIGN: cautious values an agreement can only widen deliberately.
default_max_cells := 1000

default_max_group_by := 2

time_dimensions := {"month", "quarter", "year"}

# The calendar date ("YYYY-MM-DD") of now, an RFC 3339 UTC time; undefined for anything else.
date(now) := substring(now, 0, 10) if {
	is_string(now)
	regex.match(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T`, now)
}

# True when value is a list of strings.
names(value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

# --- agreements ------------------------------------------------------------------------------

# Active, and in force on day.
in_force(ag, day) if {
	ag.status == "active"
	is_string(day)
	is_string(ag.valid_from)
	is_string(ag.valid_until)
	ag.valid_from <= day
	day <= ag.valid_until
}

# The agreement's disclosure terms, defaults filled in.
disclosure(ag) := {
	"k": object.get(ag, "k", default_k),
	"round_to": object.get(ag, "round_to", default_round_to),
	"max_cells": object.get(ag, "max_cells", default_max_cells),
	"max_group_by": object.get(ag, "max_group_by", default_max_group_by),
}

# The floor under each term: k's is the consortium's; the others only rule out nonsense.
floors := {"k": k_floor, "round_to": 1, "max_cells": 1, "max_group_by": 1}

# Terms of the agreement below their floor (or not whole numbers at all).
unsound_terms(ag) := {key |
	terms := disclosure(ag)
	some key, floor in floors
	not at_least(terms[key], floor)
}

at_least(value, floor) if {
	is_number(value)
	round(value) == value
	value >= floor
}

# Why the agreement's own terms rule out every query under it, in words.
term_problems(id, ag) := {problem |
	some key in unsound_terms(ag)
	problem := floor_problem(id, key)
}

floor_problem(id, "k") := sprintf("agreement %v sets k below the consortium floor of %v", [id, k_floor])

floor_problem(id, key) := sprintf("agreement %v sets %v below 1", [id, key]) if key != "k"

# In force with sound terms: the only agreements anything is released under.
usable(ag, day) if {
	in_force(ag, day)
	count(unsound_terms(ag)) == 0
}

# The dataset is named by the agreement and owned by one of its providing agencies.
provided(ag, ds) if {
	is_array(ag.datasets)
	ds in ag.datasets
	is_array(ag.providing_agencies)
	data.catalogue.datasets[ds].owner in ag.providing_agencies
}

# --- what an agreement allows on a dataset ---------------------------------------------------

# Dimension columns of the dataset (what may be filtered on).
columns(ds) := {name |
	dimensions := data.catalogue.datasets[ds].dimensions
	is_object(dimensions)
	some name, _ in dimensions
}

# Measure labels that mean something on the dataset.
measure_labels(ds) := {"subjects", "records"} | {sprintf("%v:%v", [kind, name]) |
	measures := data.catalogue.datasets[ds].measures
	is_object(measures)
	some name, _ in measures
	some kind in ["sum", "mean"]
}

# Everything the agreement allows on the dataset, in one call: the dimensions a query may group
# by (time included), the measures and filters it may use, and the disclosure terms. Undefined
# when the catalogue has no such dataset.
terms(ag, ds) := object.union(disclosure(ag), {
	"columns": dataset_columns,
	"labels": labels,
	"dimensions": {d | is_array(ag.dimensions); some d in ag.dimensions; d in groupable},
	"measures": {m | is_array(ag.measures); some m in ag.measures; m in labels},
	"filters": {f | is_array(ag.filters); some f in ag.filters; f in dataset_columns},
}) if {
	is_object(data.catalogue.datasets[ds])
	dataset_columns := columns(ds)
	groupable := dataset_columns | time_dimensions
	labels := measure_labels(ds)
}

# --- links -----------------------------------------------------------------------------------

# What the agreement allows when subjects of dataset a are linked to dataset b (in either
# order): the widest window either side of the event, in days, and the filters allowed on b
# (a linkage entry's own list, else the agreement's). Undefined when no entry pairs them.
link_terms(ag, a, b) := {"max_days": max(windows), "filters": filters} if {
	entries := [entry |
		is_array(ag.linkage)
		some entry in ag.linkage
		is_array(entry.datasets)
		{x | some x in entry.datasets} == {a, b}
	]
	windows := {days | some entry in entries; days := entry.max_days; at_least(days, 0)}
	count(windows) > 0
	b_columns := columns(b)
	filters := {f |
		some entry in entries
		some f in entry_filters(ag, entry)
		f in b_columns
	}
}

entry_filters(ag, entry) := entry.filters if {
	is_array(entry.filters)
} else := ag.filters if {
	is_array(ag.filters)
} else := []
