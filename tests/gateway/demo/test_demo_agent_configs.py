"""The demo agents' configs: valid for the agent, pointing into the PKI layout, and mapping the
synthetic exports to the catalogue's contracts with only the planted dirty rows rejected."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from agents import Contract, FileKeySource, build_mapper, dry_run, load_config
from agents._mapping import Rejected
from agents._source import BadRow, CsvSource
from gateway.demo import DIRTY_ROWS, PLANTED_CELLS, PlantedCell, SyntheticFiles, write_agent_configs
from gateway.pki import init_dev_pki

EPOCH = date(1970, 1, 1)
DATASETS = {"metro-police": "police_incidents", "health": "ed_visits"}


@pytest.fixture(scope="module")
def pki_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    init_dev_pki(root)
    return root


def test_configs_are_written_for_both_agencies(pki_root: Path, synthetic: SyntheticFiles) -> None:
    """One config per agency, loadable by the agent, naming its dataset, keys and certificates."""
    paths = write_agent_configs(pki_root, synthetic.folder, address="127.0.0.1:50999")
    assert paths == {agency: pki_root / f"agent-{agency}.toml" for agency in DATASETS}
    for agency, path in paths.items():
        config = load_config(path)
        assert (config.agent.agency, config.agent.dataset) == (agency, DATASETS[agency])
        assert config.gateway.address == "127.0.0.1:50999"
        assert config.gateway.ca == (pki_root / "ca" / "ca.pem").resolve()
        assert config.gateway.cert == (pki_root / "agents" / agency / "agent.pem").resolve()
        assert config.gateway.hpke_public_key == (pki_root / "gateway" / "hpke.pub").resolve()
        assert config.keys.signing_key_id == f"{agency}-1"
        assert config.agent.state_dir == (pki_root / "state" / agency).resolve()
        for file in (
            config.gateway.ca,
            config.gateway.cert,
            config.gateway.key,
            config.gateway.hpke_public_key,
        ):
            assert file.is_file(), file
        keys = FileKeySource(config.keys)  # the PKI's key files pass the agent's own checks
        assert len(keys.linkage_key()) == 32
        assert keys.signing_key().key_id == f"{agency}-1"


def test_paths_inside_are_relative(pki_root: Path, synthetic: SyntheticFiles) -> None:
    """No absolute path is written, so the folder can move as a whole."""
    for path in write_agent_configs(pki_root, synthetic.folder).values():
        text = path.read_text()
        assert str(pki_root) not in text
        assert "../" in text or "data" in text


def test_rewriting_replaces_the_address(pki_root: Path, synthetic: SyntheticFiles) -> None:
    """Writing again over an existing folder updates the configs in place."""
    write_agent_configs(pki_root, synthetic.folder, address="127.0.0.1:1111")
    paths = write_agent_configs(pki_root, synthetic.folder, address="127.0.0.1:2222", server_name="localhost")
    config = load_config(paths["health"])
    assert (config.gateway.address, config.gateway.server_name) == ("127.0.0.1:2222", "localhost")


@pytest.mark.parametrize("agency", sorted(DATASETS))
def test_only_the_planted_dirty_rows_are_rejected(
    pki_root: Path, synthetic: SyntheticFiles, contracts: dict[str, Contract], agency: str
) -> None:
    """Mapping a whole export against its catalogue contract rejects exactly the planted rows, by field."""
    config = load_config(write_agent_configs(pki_root, synthetic.folder)[agency])
    dataset = DATASETS[agency]

    summary = dry_run(config, contracts[dataset])

    planted = [d for d in DIRTY_ROWS if d.file == f"{dataset}.csv"]
    rows = synthetic.ed_rows if dataset == "ed_visits" else synthetic.police_rows
    assert (summary.read, summary.rejected, summary.sent) == (rows, len(planted), rows - len(planted))
    with (config.agent.state_dir / "rejects.csv").open(newline="") as handle:
        fields = sorted(row["field"] for row in csv.DictReader(handle))
    assert fields == sorted(d.field for d in planted)


@pytest.mark.parametrize("cell", PLANTED_CELLS, ids=lambda c: c.dataset)
def test_planted_rare_cells_hold_that_few_people(
    pki_root: Path, synthetic: SyntheticFiles, contracts: dict[str, Contract], cell: PlantedCell
) -> None:
    """After mapping, the planted district/month/age-band/category cell has exactly its planted people."""
    agency = next(a for a, d in DATASETS.items() if d == cell.dataset)
    config = load_config(write_agent_configs(pki_root, synthetic.folder)[agency])
    contract = contracts[cell.dataset]
    mapper = build_mapper(config, contract, FileKeySource(config.keys).linkage_key())
    category = "presentation" if cell.dataset == "ed_visits" else "incident_type"
    people: dict[tuple[str, ...], set[bytes]] = defaultdict(set)
    with CsvSource(config.source).open(config.source_columns()) as stream:
        for _line, row in stream:
            if isinstance(row, BadRow):
                continue
            try:
                token, day, codes, _values = mapper.map(row)
            except Rejected:  # the planted dirty rows
                continue
            values = {d.name: d.domain[code] for d, code in zip(contract.dimensions, codes, strict=True)}
            month = (EPOCH + timedelta(days=day)).strftime("%Y-%m")
            people[(values["district"], month, values["age_band"], values[category])].add(token)
    assert len(people[(cell.district, cell.month, cell.age_band, cell.category)]) == cell.people
    small = [key for key, tokens in people.items() if len(tokens) < 5]
    assert len(small) > 10  # fine groupings leave many cells that a k of 5 or more must withhold
