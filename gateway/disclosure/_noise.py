"""Noise that is the same for the same people (DESIGN §9.6, lesson 1), for agreements with
``noise {epsilon, budget, period}``.

Each released value gets Laplace noise drawn from a keyed hash, never from a random generator:
HMAC-SHA256 under a gateway secret (HKDF from the rest key, info "noise") of the cell's people
digest (SUM(DISTINCT subject_h), computed in SQL, so a value list reordered, an empty category
added or a range spelled differently changes nothing), its true figures, the measure and the
dataset's data version. Asking again, or rewording, gives the same answer: there is nothing to
average away. Different people, or the same people after new data, get an independent draw.

Scale: a release is charged ``epsilon`` of the agreement's budget. Its cells are disjoint and
the total overlaps each of them once (parallel composition, times 2), and each base measure is
a further release of the same people (sequential composition, times the number of base
measures: subjects, records, one per summed column; a mean is post-processing of its sum and
records). So each base measure gets Laplace(sensitivity * 2 * m / epsilon), where m counts every
base measure the agreement allows (subjects, records and each column with a clamp bound), not
just those asked for: with m from the wording, ``sum:x`` alone and ``records, sum:x`` drew the same
Laplace variate at two scales, and ``2a - b`` gave the true sum back. The scale also goes into the
keyed hash, so two agreements (or two epsilons) over the same people draw independently instead
of at proportional scales, which would cancel the same way. Sensitivity is 1
for distinct subjects; for records and sums it is per record (1, and the clamp bound): a person
with many records moves them further, which the threshold on distinct subjects, the dominance
rule and rounding still cover, but the epsilon of those two is per record, not per person.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import GatewayError
from gateway.query import MeasureRef, QuerySpec, RawCell

_MANTISSA = 2**53


def noise_key(rest_key: bytes) -> bytes:
    """The noise secret: HKDF-SHA256 from the gateway's rest key, info "noise"."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"noise").derive(rest_key)


@dataclass(frozen=True)
class Noise:
    """What the noise of one release depends on, besides each cell."""

    key: bytes
    epsilon: float
    dataset: str
    data_version: int
    bounds: Mapping[str, float]  # per summed column: the most one record can add (clamp bound)

    def __post_init__(self) -> None:
        if len(self.key) < 16 or not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise GatewayError("noise needs a secret key and a positive epsilon")


def base_measures(spec: QuerySpec) -> tuple[str, ...]:
    """The figures noise is drawn for: subjects, records (for records and means), and each
    summed column (for sums and means), in a fixed order."""
    kinds = {m.kind for m in spec.measures}
    labels = ["subjects"] if "subjects" in kinds else []
    if kinds & {"records", "mean"}:
        labels.append("records")
    labels += [f"sum:{f}" for f in spec.sum_fields]
    return tuple(labels)


def noisy_value(noise: Noise, spec: QuerySpec, measure: MeasureRef, cell: RawCell) -> float | None:
    """The measure's value for ``cell`` with its noise; None for a mean whose noisy records are
    not positive (it does not exist). Never below 0: counts and clamped sums cannot be."""
    if measure.kind == "mean":
        records = _noisy(noise, "records", cell)
        total = _noisy(noise, f"sum:{measure.field}", cell)
        return total / records if records >= 1 else None
    label = "records" if measure.kind == "records" else measure.label
    return _noisy(noise, label, cell)


def _noisy(noise: Noise, label: str, cell: RawCell) -> float:
    true = _true(label, cell)
    sensitivity = 1.0 if label in ("subjects", "records") else _bound(noise, label)
    # every base measure the agreement allows, whichever were asked for: see the module doc
    allowed = 2 + len(noise.bounds)
    scale = sensitivity * 2 * allowed / noise.epsilon
    return max(0.0, true + laplace(_uniform(noise, label, cell, true, scale), scale))


def laplace(u: float, scale: float) -> float:
    """The Laplace(0, scale) quantile of ``u`` in (0, 1)."""
    if not 0 < u < 1:
        raise GatewayError("a noise draw fell outside (0, 1)")
    return scale * math.log(2 * u) if u < 0.5 else -scale * math.log(2 * (1 - u))


def _uniform(noise: Noise, label: str, cell: RawCell, true: float, scale: float) -> float:
    message = json.dumps(
        [
            noise.dataset,
            noise.data_version,
            label,
            cell.people,
            cell.subjects,
            cell.records,
            true.hex(),
            scale.hex(),
        ],
        separators=(",", ":"),
    ).encode()
    draw = int.from_bytes(hmac.new(noise.key, message, hashlib.sha256).digest()[:8], "big") >> 11
    return (draw + 0.5) / _MANTISSA


def _true(label: str, cell: RawCell) -> float:
    if label == "subjects":
        return float(cell.subjects)
    if label == "records":
        return float(cell.records)
    field = label.partition(":")[2]
    if field not in cell.sums:
        raise GatewayError("the raw result lacks a sum the query needs")
    return float(cell.sums[field])


def _bound(noise: Noise, label: str) -> float:
    bound = noise.bounds.get(label.partition(":")[2])
    if bound is None or not (bound > 0 and math.isfinite(bound)):
        raise GatewayError("noise needs the clamp bound of every summed measure")
    return bound
