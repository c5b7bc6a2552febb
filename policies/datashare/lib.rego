# The consortium's shared reading of its data: what an agreement allows on a dataset, whether it
# is in force, and the floors no agreement can lower (DESIGN §8, §9). The query decision and the
# listing both read agreements through these functions, so they cannot disagree.
#
# Portability: regorus raises an error where OPA is merely undefined (iterating something that
# is not a collection, a builtin given the wrong type), so values are type-checked before they
# are iterated or passed to builtins. Dates are compared as "YYYY-MM-DD" strings, and sprintf
# uses only %v, so OPA and regorus decide alike.
#
# Speed (regorus, measured): an expression costs ~1 µs, a function call a few µs and is not
# memoised, while a rule is computed once per decision; and a rule of this package referenced
# through `import data.datashare.lib` evaluates the whole package (~100 µs). So other modules
# call a few coarse functions here (terms, link_terms), keep the results in rules of their own,
# and never reference this package's rules.
package datashare.lib

import rego.v1

# Each disclosure term: its default when an agreement says nothing, and the floor no agreement
# may go below (DESIGN §9). k's floor is the consortium's; the others only rule out nonsense.
# max_cells and max_group_by are not set by DESIGN: cautious defaults an agreement can widen.
term_rules := {
	"k": {"default": 10, "floor": 10},
	"round_to": {"default": 5, "floor": 1},
	"max_cells": {"default": 1000, "floor": 1},
	"max_group_by": {"default": 2, "floor": 1},
}

# Pseudo-dimensions derived from the event date (gateway.catalogue.TIME_DIMENSIONS).
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

# Terms of the agreement below their floor (or not whole numbers at all).
unsound_terms(ag) := {key |
	some key, rule in term_rules
	value := object.get(ag, key, rule.default)
	not at_least(value, rule.floor)
}

# The agreement's disclosure terms with their defaults applied (one call on the hot path).
disclosure(ag) := {key: object.get(ag, key, rule.default) | some key, rule in term_rules}

# The agreement's terms are all at or above their floors.
sound_terms(ag) if sound_disclosure(disclosure(ag))

# Terms from disclosure(ag) all at or above their floors, written out: a comprehension over
# term_rules costs twice as much on the hot path.
sound_disclosure(terms) if {
	is_number(terms.k)
	round(terms.k) == terms.k
	terms.k >= term_rules.k.floor
	is_number(terms.round_to)
	round(terms.round_to) == terms.round_to
	terms.round_to >= term_rules.round_to.floor
	is_number(terms.max_cells)
	round(terms.max_cells) == terms.max_cells
	terms.max_cells >= term_rules.max_cells.floor
	is_number(terms.max_group_by)
	round(terms.max_group_by) == terms.max_group_by
	terms.max_group_by >= term_rules.max_group_by.floor
}

at_least(value, floor) if {
	is_number(value)
	round(value) == value
	value >= floor
}

# Why the agreement's own terms rule out every query under it, in words.
term_problems(id, ag) := {floor_problem(id, key, term_rules[key].floor) | some key in unsound_terms(ag)}

floor_problem(id, "k", floor) := sprintf("agreement %v sets k below the consortium floor of %v", [id, floor])

floor_problem(id, key, floor) := sprintf("agreement %v sets %v below %v", [id, key, floor]) if key != "k"

# In force with sound terms: the only agreements anything is released under.
usable(ag, day) if {
	in_force(ag, day)
	sound_terms(ag)
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
# by (time included), the measures and filters it may use, and the disclosure terms; also the
# dataset's own columns and measure labels, to explain a deny. Undefined when the catalogue has
# no such dataset. Written out rather than built from columns() and friends: it is on every
# query's path.
terms(ag, ds) := {
	"k": object.get(ag, "k", term_rules.k.default),
	"round_to": object.get(ag, "round_to", term_rules.round_to.default),
	"max_cells": object.get(ag, "max_cells", term_rules.max_cells.default),
	"max_group_by": object.get(ag, "max_group_by", term_rules.max_group_by.default),
	"columns": dataset_columns,
	"groupable": groupable,
	"labels": labels,
	"dimensions": {d | is_array(ag.dimensions); some d in ag.dimensions; d in groupable},
	"measures": {m | is_array(ag.measures); some m in ag.measures; m in labels},
	"filters": {f | is_array(ag.filters); some f in ag.filters; f in dataset_columns},
} if {
	spec := data.catalogue.datasets[ds]
	is_object(spec.dimensions)
	dataset_columns := {name | some name, _ in spec.dimensions}
	groupable := dataset_columns | time_dimensions
	measure_names := {name | is_object(spec.measures); some name, _ in spec.measures}
	labels := {"subjects", "records"} | {sprintf("%v:%v", [kind, name]) |
		some name in measure_names
		some kind in ["sum", "mean"]
	}
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

# --- the query decision's hot path (query.granted): one call each ----------------------------

# The catalogued dataset ds (spec) is named by the agreement and owned by a providing agency.
provided_by(ag, ds, spec) if {
	is_array(ag.datasets)
	ds in ag.datasets
	is_array(ag.providing_agencies)
	spec.owner in ag.providing_agencies
}

# The label names a measure of the dataset: subjects, records, or sum/mean of a measure column.
measure_of(_, label) if label in {"subjects", "records"}

measure_of(spec, label) if {
	parts := split(label, ":")
	count(parts) == 2
	parts[0] in {"sum", "mean"}
	is_object(spec.measures[parts[1]])
}

# The dataset may be grouped by d: one of its columns, or a time dimension.
groupable_in(_, d) if d in time_dimensions

groupable_in(spec, d) if is_object(spec.dimensions[d])

# The grouping completes none of the agreement's forbidden combinations (each a list of two or
# more dimensions no query may group by all at once).
no_forbidden_combination(ag, group_by) if {
	combinations := object.get(ag, "forbidden_combinations", [])
	is_array(combinations)
	every combination in combinations {
		is_array(combination)
		not all_in(combination, group_by)
	}
}

all_in(xs, ys) if {
	every x in xs {
		x in ys
	}
}

# No month range, or one with a first and a last month.
months_ok(months) if is_null(months)

months_ok(months) if {
	is_string(months.first)
	is_string(months.last)
}

# No link, or one to a dataset the agreement covers, for a pair it lets be linked, within its
# window, with filters it allows on the linked dataset.
link_ok(_, _, link) if is_null(link)

link_ok(ag, ds, link) if {
	is_object(link)
	is_string(link.dataset)
	spec := data.catalogue.datasets[link.dataset]
	is_object(spec)
	provided_by(ag, link.dataset, spec)
	terms := link_terms(ag, ds, link.dataset)
	every side in ["days_before", "days_after"] {
		whole_days(link[side])
		link[side] <= terms.max_days
	}
	filters := object.get(link, "filters", [])
	names(filters)
	every f in filters {
		f in terms.filters
	}
}

# Only up to 2^53 - 1, where floats are exact: past an i64, regorus's round fails where OPA's
# does not, and past 2^53 the two print numbers differently (1e+16 against the digits).
whole_days(n) if {
	is_number(n)
	n >= 0
	n <= 9007199254740991
	round(n) == n
}

# --- query budget ----------------------------------------------------------------------------

# Within the agreement's query budget (its query_budget term, or null): none is set, or the
# gateway reported (input.usage, counted from the audit log) fewer queries allowed under the
# agreement this period than the budget allows. A budget without a reported count denies.
within_budget(budget, _) if is_null(budget)

within_budget(budget, usage) if {
	is_object(budget)
	is_number(budget.queries)
	is_object(usage)
	is_number(usage.queries_this_period)
	usage.queries_this_period < budget.queries
}
