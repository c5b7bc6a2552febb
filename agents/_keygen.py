"""`agent keygen`: a new Ed25519 signing key for this agency, for first enrolment or rotation.

Rotation without a gap (DESIGN §6: the gateway verifies against the keys enrolled for the agency):

1. `agent keygen --out keys/health-2.key --key-id health-2` writes the private key (owner-only,
   never overwritten) and its public key beside it (`.pub`), and prints the lines the gateway
   operator adds under [agencies.<agency>.signing_keys];
2. the gateway operator enrols it and restarts the gateway: batches signed by either key are now
   accepted (the overlap);
3. you point [keys] signing_key / signing_key_id at the new key; batches already in the spool stay
   signed by the old key and are still accepted;
4. once the spool is empty (`agent check`, or the summary's "still in the spool"), the gateway
   operator removes the old key id.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents._config import AGENCY_NAME, AGENCY_RULE
from agents.errors import ConfigError

_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

KEYGEN_DESCRIPTION = """\
Make a new Ed25519 signing key for your agency: the private key goes to --out (readable by its
owner only; an existing file is never overwritten), the public key to the same name with .pub.
The output says what the gateway operator adds to enrol it. To rotate: enrol the new key, switch
[keys] signing_key and signing_key_id to it, and have the old key id removed once the spool is
empty; during the overlap the gateway accepts batches signed by either.

examples:
  agent keygen --out /etc/datashare/keys/health-2.key --key-id health-2 --agency health
  agent keygen --out keys/police-3.key --key-id police-3 --agency metro-police --json
"""


def add_keygen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE",
        help="where to write the private key (PEM, mode 0600); the public key goes to FILE.pub "
        "(example: --out keys/health-2.key)",
    )
    parser.add_argument(
        "--key-id",
        required=True,
        metavar="ID",
        help="the id batches will carry and the gateway enrols the key under; a new one for every "
        "key (example: --key-id health-2)",
    )
    parser.add_argument(
        "--agency",
        required=True,
        metavar="AGENCY",
        help="your agency's name at the gateway, for the enrolment lines (example: --agency health)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"private_key", "public_key", "key_id", "gateway_config"} '
        "instead of text (example: --json)",
    )


def write_signing_key(out: Path, key_id: str) -> Path:
    """Write a fresh private key to `out` (0600) and its public key to `out`.pub, both created
    exclusively: both files are written or neither is (a half-written pair is removed)."""
    if not _KEY_ID.match(key_id):
        raise ConfigError(f"--key-id: '{key_id}' must be letters, digits, '.', '_' or '-' (at most 64)")
    public_path = out.with_name(out.name + ".pub")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path in (out, public_path):
        if path.exists():
            raise ConfigError(f"{path}: already exists; keys are never overwritten (choose another --out)")
    written: list[Path] = []
    try:
        for path, pem, mode in ((out, private_pem, 0o600), (public_path, public_pem, 0o644)):
            # O_EXCL: a file that appeared since the check above is not overwritten either
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        failed = path  # the file being written when it failed
        raise ConfigError(f"{failed}: cannot write the key ({exc.strerror or exc})") from exc
    return public_path


def run_keygen(args: argparse.Namespace) -> int:
    out: Path = args.out.absolute()
    if not AGENCY_NAME.match(args.agency):
        # the name goes into TOML the gateway operator pastes: nothing may break out of its quotes
        raise ConfigError(f"--agency: must be {AGENCY_RULE}, as in the agent config's [agent] agency")
    public_path = write_signing_key(out, args.key_id)
    snippet = f'[agencies."{args.agency}".signing_keys]\n"{args.key_id}" = "{public_path}"\n'
    if args.json:
        result = {
            "private_key": str(out),
            "public_key": str(public_path),
            "key_id": args.key_id,
            "gateway_config": snippet,
        }
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    sys.stdout.write(
        f"private key: {out} (keep it here; mode 0600)\n"
        f"public key:  {public_path} (send it to the gateway operator)\n\n"
        "The gateway operator enrols it by adding to the gateway's TOML config, keeping the old key\n"
        "until your spool is empty:\n\n"
        f"{snippet}\n"
        f'Then set [keys] signing_key = "{out}" and signing_key_id = "{args.key_id}" in the agent config.\n'
    )
    return 0
