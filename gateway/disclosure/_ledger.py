"""Differencing defences over the release ledger (DESIGN §9 items 3 and 6), as pure functions.

Every released cell is described canonically by the people it counts: a ``CellPredicate`` is the
conjunction of a value set per dimension (from the query's filters and the cell's own group key),
a set of months, and a link (another dataset, a window, that side's filters). Two descriptions of
the same people in other words (a reordered value list, a quarter spelled as three months, a
filter on every value of a domain) give the same predicate.

A new cell is compared with the ledger cells of the same agreement and dataset whose predicates
are nested with it (one contains the other); nothing else is comparable, which bounds the work.
For each container P among the new and ledger cells, with the cells strictly inside it as parts,
the people of P outside every part are what subtraction gives away (``P - Q`` for one part: a
differencing or tracker pair; ``P - Q1 - Q2 - ...``: a total or margin minus cells released by
other queries). That difference must hold at least k distinct subjects, and an empty difference
counts as small (DESIGN lesson 2: answering only when it is empty would say that it is empty).
Only a difference that is empty *by description* (the parts cover P value by value, as the cells
of a grid cover its total) needs no count, because it says nothing the request did not.

When a check fails, the new cells it involves are withheld (a new container, or the new parts of
a ledger container); the caller re-runs secondary suppression with them so they cannot be
recovered from this query's own total. We withhold rather than refuse the query: a withheld cell
looks like any other, the answer keeps its shape, and no reason text has to be worded around a
count. Withholding only ever removes released cells, and every check is monotone in that, so one
pass suffices.

The counts are exact distinct-subject counts done by the store in SQL (``gateway.store._ledger``);
this module only decides what to count and what to withhold.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.catalogue import TIME_DIMENSIONS, Catalogue
from gateway.disclosure._dominance import dominated
from gateway.disclosure._grid import Grid, month_keys
from gateway.errors import GatewayError
from gateway.query import QuerySpec
from gateway.query._spec import Filters, LinkSpec

ValueSets = tuple[tuple[str, tuple[str, ...]], ...]
"""(dimension, sorted values), sorted by dimension; a dimension absent is not constrained."""

COVER_ATOMS_MAX = 20_000
"""Above this many value combinations a cover is not worked out, and the difference is counted."""


@dataclass(frozen=True)
class LinkPredicate:
    dataset: str
    days_before: int
    days_after: int
    dims: ValueSets = ()
    months: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CellPredicate:
    """The records a released cell counts people over; ``months`` None means any month."""

    dataset: str
    dims: ValueSets = ()
    months: tuple[str, ...] | None = None
    link: LinkPredicate | None = None

    def canonical(self) -> str:
        """A stable JSON text of the predicate, as the ledger stores it."""
        return json.dumps(_to_json(self), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


@dataclass(frozen=True)
class LedgerCell:
    """A cell released earlier under the agreement, as the ledger holds it."""

    decision_id: str
    predicate: CellPredicate
    released_at: str = ""  # the data watermark of its last release (gateway/store/_watermark.py)
    labels: frozenset[str] = frozenset()  # the measures it released (``subjects``, ``sum:<field>``...)


@dataclass(frozen=True)
class Check:
    """People of ``container`` outside every one of ``parts`` must number at least k."""

    container: CellPredicate
    parts: tuple[CellPredicate, ...]
    withhold: frozenset[int]  # new cells (their numbers) to withhold when the check fails
    against: str  # a ledger decision id this check compares with
    sources: tuple[CellPredicate, ...] = ()  # the released cells whose figures give the difference

    @property
    def derived_from(self) -> tuple[CellPredicate, ...]:
        """The released cells the difference is worked out from (the container and its parts
        unless ``sources`` says otherwise, as for an overlap found by inclusion-exclusion)."""
        return self.sources or (self.container, *self.parts)


def describe_cells(spec: QuerySpec, grid: Grid, catalogue: Catalogue) -> tuple[CellPredicate, ...]:
    """The predicate of every grid cell in grid order, then of the total (numbered ``len(grid)``)."""
    domains = _domains(catalogue, spec.dataset)
    dims, months = _constraints(spec.filters, domains)
    for name in spec.group_by:  # the store keeps only current domain values for grouped columns
        if name not in TIME_DIMENSIONS and name not in dims:
            dims[name] = frozenset(domains[name])
    if spec.months is not None:
        months = _meet(months, frozenset(month_keys(*spec.months)))
    link = _link(spec.link, catalogue) if spec.link is not None else None
    cells: list[CellPredicate] = []
    for key in grid:
        cell_dims, cell_months = dict(dims), months
        for name, value in zip(spec.group_by, key, strict=True):
            if name in TIME_DIMENSIONS:
                cell_months = _meet(cell_months, _months_of(name, value))
            else:
                cell_dims[name] = frozenset({value})
        cells.append(_predicate(spec.dataset, cell_dims, cell_months, link, domains))
    cells.append(_predicate(spec.dataset, dims, months, link, domains))
    return tuple(cells)


def contains(outer: CellPredicate, inner: CellPredicate) -> bool:
    """Whether every record ``inner`` selects is selected by ``outer``, by description alone."""
    if outer.dataset != inner.dataset or not _box_within(inner.dims, inner.months, outer.dims, outer.months):
        return False
    if outer.link is None:
        return True
    if inner.link is None:
        return False
    o, i = outer.link, inner.link
    return (
        o.dataset == i.dataset
        and i.days_before <= o.days_before
        and i.days_after <= o.days_after
        and _box_within(i.dims, i.months, o.dims, o.months)
    )


def plan_checks(
    new: Sequence[CellPredicate | None],
    ledger: Sequence[LedgerCell],
    domains: Mapping[str, tuple[str, ...]],
) -> tuple[Check, ...]:
    """The differences to count before releasing ``new`` (indexed by cell number; None for a
    cell already withheld). Only checks that mix this release with the ledger are planned: one
    within this query alone is secondary suppression's, one within the ledger was made before."""
    old: dict[CellPredicate, str] = {}
    for cell in ledger:
        old.setdefault(cell.predicate, cell.decision_id)
    fresh: dict[CellPredicate, set[int]] = {}
    for number, predicate in enumerate(new):
        if predicate is not None and predicate not in old:  # the very same people again: nothing new
            fresh.setdefault(predicate, set()).add(number)
    if not fresh or not old:
        return ()
    # Only ledger cells nested with some new cell, and ledger cells inside those, can take part.
    touching = [p for p in old if any(contains(p, f) or contains(f, p) for f in fresh)]
    inside = [p for p in old if any(contains(t, p) for t in touching if t != p)]
    pool = list(dict.fromkeys([*fresh, *touching, *inside]))
    checks: list[Check] = []
    for container in pool:
        parts = tuple(p for p in pool if p != container and contains(container, p))
        if not parts:
            continue
        container_new = container in fresh
        new_parts = [p for p in parts if p in fresh]
        if not container_new and not new_parts:
            continue  # all of the ledger: checked when it was released
        if container_new and len(new_parts) == len(parts):
            continue  # all of this release: secondary suppression's job
        withhold = frozenset(fresh[container]) if container_new else _numbers(fresh, new_parts)
        against = old.get(container) or next(old[p] for p in parts if p in old)
        checks.extend(_overlap_checks(container, parts, fresh, old, domains))
        if not covered(container, parts, domains):
            checks.append(Check(container, parts, withhold, against))
            continue
        # Covered by description: the union says nothing, but each mixed pair still might.
        for part in parts:
            if (part in fresh) != container_new:
                numbers = frozenset(fresh[container]) if container_new else frozenset(fresh[part])
                checks.append(Check(container, (part,), numbers, old.get(container) or old[part]))
    return tuple(checks)


def _overlap_checks(
    container: CellPredicate,
    parts: Sequence[CellPredicate],
    fresh: Mapping[CellPredicate, set[int]],
    old: Mapping[CellPredicate, str],
    domains: Mapping[str, tuple[str, ...]],
) -> list[Check]:
    """Inclusion-exclusion: two overlapping parts A and B, neither inside the other, whose union
    is exactly ``container`` give their overlap by |A| + |B| - |A u B| (exactly, for records and
    sums). Each such overlap, where this release supplies one of the three, must hold k people;
    overlaps whose union was never released give nothing away and are not checked (a grid by
    month after one by district overlaps everywhere and derives no cell)."""
    out: list[Check] = []
    for a, b in itertools.combinations(parts, 2):
        trio = (container, a, b)
        new = [p for p in trio if p in fresh]
        if not new or len(new) == 3 or contains(a, b) or contains(b, a):
            continue
        overlap = _overlap_of_union(container, a, b, domains)
        if overlap is None:
            continue
        against = next(old[p] for p in trio if p in old)
        out.append(Check(overlap, (), _numbers(fresh, new), against, sources=trio))
    return out


def _overlap_of_union(
    union: CellPredicate, a: CellPredicate, b: CellPredicate, domains: Mapping[str, tuple[str, ...]]
) -> CellPredicate | None:
    """A and B's overlap when they differ along one axis only (a dimension, or the months),
    overlap on it, and together make exactly ``union``; None otherwise (including when the
    union is not theirs, when they do not overlap, or when their links differ)."""
    if not (union.link == a.link == b.link):
        return None
    axes = sorted({d for p in (union, a, b) for d, _ in p.dims})
    sets = [_axis_sets(p, axes, domains) for p in (union, a, b)]
    differing = [axis for axis in axes if sets[1][axis] != sets[2][axis]]
    if a.months != b.months:
        differing.append("")  # the months
    if len(differing) != 1 or any(sets[0][x] != sets[1][x] for x in axes if x != differing[0]):
        return None
    if differing[0]:
        axis = differing[0]
        va, vb = sets[1][axis], sets[2][axis]
        if union.months != a.months or va | vb != sets[0][axis] or not va & vb:
            return None
        dims = {d: frozenset(v) for d, v in a.dims} | {axis: va & vb}
        return CellPredicate(a.dataset, _normal(dims, domains), a.months, a.link)
    ma, mb, mu = (frozenset(p.months) if p.months is not None else None for p in (a, b, union))
    if ma is None or mb is None or ma | mb != mu or not ma & mb:  # any month: no finite union
        return None
    return CellPredicate(a.dataset, a.dims, tuple(sorted(ma & mb)), a.link)


def _axis_sets(
    predicate: CellPredicate, axes: Sequence[str], domains: Mapping[str, tuple[str, ...]]
) -> dict[str, frozenset[str]]:
    """The values a predicate allows on each axis, a free axis allowing its whole domain."""
    dims = dict(predicate.dims)
    return {axis: frozenset(dims.get(axis, domains.get(axis, ()))) for axis in axes}


PairGroup = tuple[CellPredicate, tuple[tuple[int, CellPredicate], ...]]
"""A container and its one-part checks (check number, part), the parts pairwise disjoint."""

GROUPED_TERMS_MAX = 4096
"""Containers and parts counted in one grouped statement, at most (one CASE term each per row)."""

GROUPED_LAYERS_MAX = 4
"""Grouped statements (layers of disjoint containers, ``container_layers``) a check may take, at
most: each reads the table, for the counts and again for the sums. A group fitting none of them
is counted with the rest, one check at a time, where MAX_LEDGER_CHECKS (gateway/server/
_release_ledger.py) bounds the work: nested totals under ever other filters (a review found 28
layers from 63 earlier releases) would otherwise add a table scan each, unrefused."""


def grouped_pairs(checks: Sequence[Check]) -> tuple[tuple[PairGroup, ...], tuple[int, ...]]:
    """Split the checks into those one grouped count answers together, and the rest (numbers).

    A check with one part asks for the people of container C with no record in part P, |C| - |P|
    (a person with records in P and elsewhere in C is not outside it). When C's parts are
    pairwise disjoint, each row lies in one part at most: the rows, each labelled with its
    container and part, counted per container and per (container, part), answer every such
    check at once (a grid asked again by fewer dimensions gives one check per old cell, hundreds
    of them). Each grouped statement needs its containers pairwise disjoint too, so that each row
    has one label: ``container_layers`` splits the groups into such statements, GROUPED_LAYERS_MAX
    of them at most (a group that fits none is left with the rest).

    A container's parts are taken finest first (most dimensions constrained, then fewest months;
    check order among equals), each one that is disjoint from those already taken: a part
    overlapping the others (a new query's total or margin beside its own cells, all checked
    against one released total) is counted alone, and no longer sends every check of its
    container to be counted alone with it (61 sorts over a million rows, 3.9 s, for a linked
    question asked after a 720-cell grid)."""
    by_container: dict[CellPredicate, list[tuple[int, CellPredicate]]] = {}
    for number, check in enumerate(checks):
        if len(check.parts) == 1:
            by_container.setdefault(check.container, []).append((number, check.parts[0]))
    groups: list[PairGroup] = []
    layers: list[list[PairGroup]] = []
    terms = 0
    for container, pairs in by_container.items():
        taken: list[tuple[int, CellPredicate]] = []
        for number, part in sorted(pairs, key=_coarseness):
            if terms + 2 + len(taken) > GROUPED_TERMS_MAX:
                break
            if all(disjoint(part, other) for _, other in taken):
                taken.append((number, part))
        group = (container, tuple(taken))
        if len(taken) < 2 or not _placed(group, layers, GROUPED_LAYERS_MAX):
            continue
        groups.append(group)
        terms += 1 + len(taken)
    grouped = {number for _, pairs in groups for number, _ in pairs}
    return tuple(groups), tuple(n for n in range(len(checks)) if n not in grouped)


def container_layers(groups: Sequence[PairGroup]) -> tuple[tuple[PairGroup, ...], ...]:
    """The groups split into layers of pairwise disjoint containers, each group in the first
    layer it fits, in order: one grouped statement per layer. A grid asked again by year has the
    old grid's total as one container and the new year cells as sixty others inside it: two
    layers, where one layer left the total's sixty checks to be counted one by one (on SQLite,
    16 s of a 34 s check at 1M rows)."""
    layers: list[list[PairGroup]] = []
    for group in groups:
        _placed(group, layers, len(groups))
    return tuple(tuple(layer) for layer in layers)


def _placed(group: PairGroup, layers: list[list[PairGroup]], most: int) -> bool:
    """Put ``group`` in the first layer whose containers its container is disjoint from, or in a
    new one if there are fewer than ``most``; False when it fits nowhere."""
    for layer in layers:
        if all(disjoint(group[0], other) for other, _ in layer):
            layer.append(group)
            return True
    if len(layers) < most:
        layers.append([group])
        return True
    return False


def _coarseness(pair: tuple[int, CellPredicate]) -> tuple[int, int, int]:
    number, part = pair
    months = len(part.months) if part.months is not None else 1 << 30
    return -len(part.dims), months, number


def disjoint(a: CellPredicate, b: CellPredicate) -> bool:
    """Whether no record can lie in both, by description: some dimension, or the months, allow
    no value in common (links aside: rows outside both boxes are in neither)."""
    if a.dataset != b.dataset:
        return True
    bd = dict(b.dims)
    if any(name in bd and not set(values) & set(bd[name]) for name, values in a.dims):
        return True
    return a.months is not None and b.months is not None and not set(a.months) & set(b.months)


def sums_to_check(
    checks: Sequence[Check], released: Mapping[CellPredicate, frozenset[str]], fields: Sequence[str]
) -> tuple[tuple[int, str], ...]:
    """(check number, measure field) for every check whose difference's sum of the field can be
    worked out: each cell it derives from released that field's sum or mean (a mean with its
    records gives the sum back, so a mean counts as a sum). The dominance rule then applies to
    the difference as to any cell."""
    out: list[tuple[int, str]] = []
    for number, check in enumerate(checks):
        for field in fields:
            shown = {f"sum:{field}", f"mean:{field}"}
            if all(released.get(p, frozenset()) & shown for p in check.derived_from):
                out.append((number, field))
    return tuple(out)


def sums_to_withhold(
    checks: Sequence[Check],
    items: Sequence[tuple[int, str]],
    figures: Sequence[tuple[float, float]],
    *,
    percent: int,
) -> frozenset[int]:
    """New cells to withhold because a difference's sum (``items`` as ``sums_to_check`` gave
    them; ``figures`` the difference's sum and top-n per-subject sums, from the store) would be
    dominated: the subtraction would give those few people's values as nearly as the cell."""
    if len(items) != len(figures):
        raise GatewayError("the ledger's sums do not match the planned checks")
    out: set[int] = set()
    for (number, _field), (total, top) in zip(items, figures, strict=True):
        if dominated(total, top, percent):
            out.update(checks[number].withhold)
    return frozenset(out)


def cells_to_withhold(checks: Sequence[Check], differences: Sequence[int], *, k: int) -> frozenset[int]:
    """New cells to withhold: those of every check whose difference holds fewer than k people
    (none at all included)."""
    if len(checks) != len(differences):
        raise GatewayError("the ledger counts do not match the planned checks")
    if k < 1:
        raise GatewayError("the disclosure threshold k must be a positive whole number")
    out: set[int] = set()
    for check, difference in zip(checks, differences, strict=True):
        if difference < k:
            out.update(check.withhold)
    return frozenset(out)


def covered(
    container: CellPredicate, parts: Sequence[CellPredicate], domains: Mapping[str, tuple[str, ...]]
) -> bool:
    """Whether ``parts`` (each inside ``container``) cover it value by value, so that no record of
    the container lies outside all of them whatever the data. Conservative: False when unsure."""
    boxes = [p for p in parts if p.link == container.link]
    if not boxes:
        return False
    axes = sorted({d for p in boxes for d, _ in p.dims})
    outer = dict(container.dims)
    values: list[tuple[str, ...]] = []
    for axis in axes:
        values.append(outer.get(axis) or domains.get(axis, ()))
        if not values[-1]:
            return False
    if any(p.months != container.months for p in boxes):
        if container.months is None:
            return False  # any month at all: cannot be enumerated
        values.append(container.months)
    size = 1
    for axis_values in values:
        size *= len(axis_values)
    if size > COVER_ATOMS_MAX:
        return False
    time_axis = len(values) > len(axes)
    sets = [(dict(p.dims), frozenset(p.months) if p.months is not None else None) for p in boxes]
    for atom in itertools.product(*values):
        point = dict(zip(axes, atom, strict=False))
        month = atom[-1] if time_axis else None
        if not any(_holds(dims, months, point, month) for dims, months in sets):
            return False
    return True


# -- helpers -----------------------------------------------------------------------------------


def _holds(
    dims: Mapping[str, tuple[str, ...]],
    months: frozenset[str] | None,
    point: Mapping[str, str],
    month: str | None,
) -> bool:
    if any(point.get(d) not in v for d, v in dims.items() if d in point):
        return False
    return month is None or months is None or month in months


def _numbers(fresh: Mapping[CellPredicate, set[int]], predicates: Sequence[CellPredicate]) -> frozenset[int]:
    return frozenset(n for p in predicates for n in fresh[p])


def _box_within(
    inner_dims: ValueSets,
    inner_months: tuple[str, ...] | None,
    outer_dims: ValueSets,
    outer_months: tuple[str, ...] | None,
) -> bool:
    inner = dict(inner_dims)
    for name, values in outer_dims:
        mine = inner.get(name)
        if mine is None or not set(mine) <= set(values):
            return False
    if outer_months is None:
        return True
    return inner_months is not None and set(inner_months) <= set(outer_months)


def _domains(catalogue: Catalogue, dataset: str) -> dict[str, tuple[str, ...]]:
    found = catalogue.dataset(dataset)
    if found is None:
        raise GatewayError("a query spec names a dataset the catalogue does not hold")
    return {d.name: d.domain for d in found.dimensions}


def domains_of(catalogue: Catalogue, dataset: str) -> dict[str, tuple[str, ...]]:
    """Each dimension's domain, for ``plan_checks``."""
    return _domains(catalogue, dataset)


def _constraints(
    filters: Filters, domains: Mapping[str, tuple[str, ...]]
) -> tuple[dict[str, frozenset[str]], frozenset[str] | None]:
    dims: dict[str, frozenset[str]] = {}
    months: frozenset[str] | None = None
    for name, values in filters:
        if name in TIME_DIMENSIONS:
            months = _meet(months, frozenset(m for v in values for m in _months_of(name, v)))
        else:
            dims[name] = frozenset(values)
    return dims, months


def _link(link: LinkSpec, catalogue: Catalogue) -> LinkPredicate:
    domains = _domains(catalogue, link.dataset)
    dims, months = _constraints(link.filters, domains)
    return LinkPredicate(
        link.dataset, link.days_before, link.days_after, _normal(dims, domains), _sorted(months)
    )


def _predicate(
    dataset: str,
    dims: Mapping[str, frozenset[str]],
    months: frozenset[str] | None,
    link: LinkPredicate | None,
    domains: Mapping[str, tuple[str, ...]],
) -> CellPredicate:
    return CellPredicate(dataset, _normal(dims, domains), _sorted(months), link)


def _normal(dims: Mapping[str, frozenset[str]], domains: Mapping[str, tuple[str, ...]]) -> ValueSets:
    # A value set holding the whole domain constrains nothing (rows of an older contract aside,
    # see the README): dropping it makes "every district" and "no district filter" one predicate.
    return tuple(
        (name, tuple(sorted(values)))
        for name, values in sorted(dims.items())
        if not values.issuperset(domains.get(name, ()))
    )


def _sorted(months: frozenset[str] | None) -> tuple[str, ...] | None:
    return None if months is None else tuple(sorted(months))


def _meet(a: frozenset[str] | None, b: frozenset[str]) -> frozenset[str]:
    return b if a is None else a & b


def _months_of(unit: str, value: str) -> frozenset[str]:
    """The months a time key stands for: ``2024-03``, ``2024-Q1`` or ``2024``."""
    if unit == "month":
        return frozenset({value})
    if unit == "quarter":
        first = (int(value[-1]) - 1) * 3 + 1
        return frozenset(month_keys(f"{value[:4]}-{first:02d}", f"{value[:4]}-{first + 2:02d}"))
    return frozenset(month_keys(f"{value}-01", f"{value}-12"))


def _to_json(predicate: CellPredicate) -> dict[str, object]:
    link = predicate.link
    return {
        "dataset": predicate.dataset,
        "dims": {d: list(v) for d, v in predicate.dims},
        "months": list(predicate.months) if predicate.months is not None else None,
        "link": None
        if link is None
        else {
            "dataset": link.dataset,
            "days_before": link.days_before,
            "days_after": link.days_after,
            "dims": {d: list(v) for d, v in link.dims},
            "months": list(link.months) if link.months is not None else None,
        },
    }


def from_canonical(text: str) -> CellPredicate:
    """The predicate back from its ledger text; GatewayError if the text is not one."""
    return _parsed(text)


# Every aggregate reads its agreement's whole ledger for the dataset, and a ledger row's text
# never changes: parsed once, not once per query (720 rows cost ~8 ms a query to parse).
@functools.lru_cache(maxsize=16_384)
def _parsed(text: str) -> CellPredicate:
    try:
        raw = json.loads(text)
        link = raw["link"]
        return CellPredicate(
            dataset=str(raw["dataset"]),
            dims=_value_sets(raw["dims"]),
            months=_month_tuple(raw["months"]),
            link=None
            if link is None
            else LinkPredicate(
                dataset=str(link["dataset"]),
                days_before=int(link["days_before"]),
                days_after=int(link["days_after"]),
                dims=_value_sets(link["dims"]),
                months=_month_tuple(link["months"]),
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GatewayError("a release ledger entry holds no readable cell description") from exc


def _value_sets(raw: Mapping[str, Sequence[str]]) -> ValueSets:
    return tuple((str(d), tuple(sorted(str(v) for v in values))) for d, values in sorted(raw.items()))


def _month_tuple(raw: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if raw is None else tuple(sorted(str(m) for m in raw))
