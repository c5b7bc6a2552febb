"""validate_request: canonical specs from good requests, the field path at fault for bad ones."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway._pb import query_pb2
from gateway.catalogue import Catalogue
from gateway.errors import InvalidRequest
from gateway.query import LinkSpec, MeasureRef, validate_request

Req = query_pb2.AggregateRequest
Mutation = Callable[[Req], None]


def good_request() -> Req:
    return Req(
        agreement_id="ag-2026-001",
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS),
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_MEAN, field="length_of_stay_hours"),
        ],
        group_by=["district", "month"],
        filters=[
            query_pb2.ValueFilter(dimension="sex", values=["M", "F"]),
            query_pb2.ValueFilter(dimension="district", values=["D03", "D01"]),
        ],
        months=query_pb2.MonthRange(first="2024-11", last="2025-02"),
        link=query_pb2.Link(
            dataset="police_incidents",
            days_before=30,
            days_after=0,
            filters=[query_pb2.ValueFilter(dimension="incident_type", values=["drugs", "assault"])],
        ),
    )


def test_good_request_gives_a_canonical_spec(catalogue: Catalogue) -> None:
    """Filters come back sorted by dimension with sorted values; measures and group_by keep order."""
    spec = validate_request(good_request(), catalogue)
    assert spec.dataset == "ed_visits"
    assert spec.measures == (MeasureRef("subjects"), MeasureRef("mean", "length_of_stay_hours"))
    assert spec.group_by == ("district", "month")
    assert spec.filters == (("district", ("D01", "D03")), ("sex", ("F", "M")))
    assert spec.months == ("2024-11", "2025-02")
    assert spec.link == LinkSpec("police_incidents", 30, 0, (("incident_type", ("assault", "drugs")),))


def test_request_without_months_or_link_leaves_them_out(catalogue: Catalogue) -> None:
    """An unset months range and an unset link are None in the spec, not empty defaults."""
    req = good_request()
    req.ClearField("months")
    req.ClearField("link")
    req.group_by[:] = ["district"]
    spec = validate_request(req, catalogue)
    assert spec.months is None
    assert spec.link is None


def _set(path: str, value: object) -> Mutation:
    def mutate(req: Req) -> None:
        *parents, leaf = path.split(".")
        target: object = req
        for part in parents:
            name, _, index = part.partition("[")
            target = getattr(target, name)
            if index:
                target = target[int(index.rstrip("]"))]  # type: ignore[index]
        setattr(target, leaf, value)

    return mutate


def _measures(*specs: tuple[int, str]) -> Mutation:
    def mutate(req: Req) -> None:
        del req.measures[:]
        req.measures.extend(
            query_pb2.MeasureSpec(kind=query_pb2.MeasureKind.ValueType(kind), field=field)
            for kind, field in specs
        )

    return mutate


def _group_by(*names: str) -> Mutation:
    def mutate(req: Req) -> None:
        req.group_by[:] = list(names)

    return mutate


def _filters(*filters: tuple[str, list[str]], link: bool = False) -> Mutation:
    def mutate(req: Req) -> None:
        target = req.link.filters if link else req.filters
        del target[:]
        target.extend(query_pb2.ValueFilter(dimension=d, values=v) for d, v in filters)

    return mutate


def _clear_months(req: Req) -> None:
    req.ClearField("months")


SUBJECTS, RECORDS, SUM, MEAN = (
    query_pb2.MEASURE_KIND_SUBJECTS,
    query_pb2.MEASURE_KIND_RECORDS,
    query_pb2.MEASURE_KIND_SUM,
    query_pb2.MEASURE_KIND_MEAN,
)

BAD_REQUESTS: list[tuple[str, Mutation, str]] = [
    ("agreement empty", _set("agreement_id", ""), "agreement_id"),
    ("agreement with a newline", _set("agreement_id", "ag-1\nforged"), "agreement_id"),
    ("agreement too long", _set("agreement_id", "a" * 65), "agreement_id"),
    ("agreement with trailing blank", _set("agreement_id", "ag-1 "), "agreement_id"),
    ("purpose empty", _set("purpose", ""), "purpose"),
    ("purpose not ASCII", _set("purpose", "prévention"), "purpose"),
    ("unknown dataset", _set("dataset", "prison_records"), "dataset"),
    ("no measures", _measures(), "measures"),
    ("unspecified kind", _measures((SUBJECTS, ""), (0, "")), "measures[1].kind"),
    ("unknown kind number", _measures((99, "")), "measures[0].kind"),
    ("sum without a field", _measures((RECORDS, ""), (SUM, "")), "measures[1].field"),
    ("mean of a dimension", _measures((RECORDS, ""), (MEAN, "district")), "measures[1].field"),
    ("mean of another dataset's measure", _measures((MEAN, "arrests")), "measures[0].field"),
    ("subjects with a field", _measures((SUBJECTS, "cost")), "measures[0].field"),
    ("records with a field", _measures((RECORDS, "cost")), "measures[0].field"),
    ("repeated measure", _measures((SUM, "cost"), (RECORDS, ""), (SUM, "cost")), "measures[2]"),
    ("unknown group_by", _group_by("district", "postcode"), "group_by[1]"),
    ("group_by by another dataset's dimension", _group_by("incident_type"), "group_by[0]"),
    ("repeated group_by", _group_by("sex", "sex"), "group_by[1]"),
    ("two time grains", _group_by("month", "year"), "group_by[1]"),
    ("four group_by entries", _group_by("district", "sex", "age_band", "month"), "group_by"),
    ("empty group_by entry", _group_by(""), "group_by[0]"),
    ("unknown filter dimension", _filters(("postcode", ["X"])), "filters[0].dimension"),
    ("filter on time", _filters(("month", ["2024-01"])), "filters[0].dimension"),
    ("repeated filter dimension", _filters(("sex", ["F"]), ("sex", ["M"])), "filters[1].dimension"),
    ("filter without values", _filters(("sex", [])), "filters[0].values"),
    ("filter value outside the domain", _filters(("sex", ["F", "Q"])), "filters[0].values[1]"),
    ("repeated filter value", _filters(("district", ["D01", "D01"])), "filters[0].values[1]"),
    ("month not a month", _set("months.first", "2024-13"), "months.first"),
    ("month without zero padding", _set("months.last", "2025-2"), "months.last"),
    ("month with full-width digits", _set("months.first", "\uff12\uff10\uff12\uff14-01"), "months.first"),
    ("month with a day", _set("months.first", "2024-11-01"), "months.first"),
    ("month in year 0", _set("months.first", "0000-01"), "months.first"),
    ("empty months range", _set("months.first", ""), "months.first"),
    ("last before first", _set("months.last", "2024-10"), "months.last"),
    ("span of 121 months", _set("months.first", "2015-02"), "months"),
    ("time grouping without months", _clear_months, "months"),
    ("unknown link dataset", _set("link.dataset", "prison_records"), "link.dataset"),
    ("link to the same dataset", _set("link.dataset", "ed_visits"), "link.dataset"),
    ("link window too early", _set("link.days_before", 367), "link.days_before"),
    ("link window too late", _set("link.days_after", 367), "link.days_after"),
    (
        "link filter on a dimension of the queried dataset only",
        _filters(("presentation", ["overdose"]), link=True),
        "link.filters[0].dimension",
    ),
    (
        "link filter value outside domain",
        _filters(("incident_type", ["fraud"]), link=True),
        "link.filters[0].values[0]",
    ),
    ("link filter on time", _filters(("year", ["2024"]), link=True), "link.filters[0].dimension"),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [(m, f) for _, m, f in BAD_REQUESTS], ids=[d for d, _, _ in BAD_REQUESTS]
)
def test_bad_field_is_named(catalogue: Catalogue, mutate: Mutation, field: str) -> None:
    """Each malformed field gives InvalidRequest naming exactly that field's path."""
    req = good_request()
    mutate(req)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(req, catalogue)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    "mutate",
    [
        _set("link.days_before", 366),
        _set("link.days_after", 366),
        _set("months.first", "2015-03"),  # exactly 120 months to 2025-02
        _group_by("district", "sex", "quarter"),
        _filters(("district", ["D01", "D02", "D03"])),  # the whole domain is a legal filter
        _measures((SUM, "cost"), (MEAN, "cost"), (RECORDS, "")),
    ],
    ids=["days_before 366", "days_after 366", "120 months", "three group_by", "whole domain", "sum and mean"],
)
def test_limits_themselves_are_accepted(catalogue: Catalogue, mutate: Mutation) -> None:
    """Values exactly at a limit pass: the limits are inclusive."""
    req = good_request()
    mutate(req)
    validate_request(req, catalogue)


# Every place a submitted string lands; the value put there must never come back in a message.
STRING_SLOTS: dict[str, Callable[[str], Mutation]] = {
    "agreement_id": lambda v: _set("agreement_id", v),
    "purpose": lambda v: _set("purpose", v),
    "dataset": lambda v: _set("dataset", v),
    "measures[1].field": lambda v: _measures((RECORDS, ""), (SUM, v)),
    "measures[0].field": lambda v: _measures((SUBJECTS, v)),
    "group_by[0]": _group_by,
    "filters[0].dimension": lambda v: _filters((v, ["F"])),
    "filters[0].values[0]": lambda v: _filters(("sex", [v])),
    "months.first": lambda v: _set("months.first", v),
    "months.last": lambda v: _set("months.last", v),
    "link.dataset": lambda v: _set("link.dataset", v),
    "link.filters[0].dimension": lambda v: _filters((v, ["drugs"]), link=True),
    "link.filters[0].values[0]": lambda v: _filters(("incident_type", [v]), link=True),
}
_VALID_ANYWHERE = {
    "ed_visits", "police_incidents", "district", "sex", "age_band", "presentation", "incident_type",
    "month", "quarter", "year", "cost", "length_of_stay_hours", "F", "M", "X", "drugs",
}  # fmt: skip


def _rejection(slot: str, value: str, catalogue: Catalogue) -> InvalidRequest:
    req = good_request()
    STRING_SLOTS[slot](value)(req)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(req, catalogue)
    return caught.value


# A value that is bad in every slot: too long for an identifier, in no domain, not a month.
_REFERENCE_BAD = "\x00" + "q" * 80


@settings(max_examples=300)
@given(slot=st.sampled_from(sorted(STRING_SLOTS)), value=st.text(min_size=1, max_size=120))
def test_messages_never_repeat_the_submitted_value(catalogue: Catalogue, slot: str, value: str) -> None:
    """Whatever string is submitted, the message is the one any bad value gets, and lacks it."""
    assume(value not in _VALID_ANYWHERE)
    if slot.startswith("months."):
        assume(not (len(value) == 7 and value[:4].isascii() and value[:4].isdigit()))
    # Any short printable string is a well-formed identifier; wrap it into an ill-formed one.
    submitted = f"{value}\n{value}" if slot in ("agreement_id", "purpose") else value
    error = _rejection(slot, submitted, catalogue)
    reference = _rejection(slot, _REFERENCE_BAD, catalogue)
    assert error.field == reference.field
    assert error.message == reference.message
    assume(value not in reference.message)  # a one-letter value may occur in any sentence
    assert value not in error.message
