"""The LDAP group directory the ``ldap_group`` source tests sync from (fixture: conftest.py).

slapd (``ikemgr_lab.slapd``) with a certificate from a test CA, TLS required, people (erin
disabled), two lab groups (groupOfNames, one with a member that does not exist), a
posixGroup with hostile memberUid values, and a group whose members' ``labAccount`` is
raw bytes (one not UTF-8). A module of its own name, not ``conftest``: the test module
imports the names.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port
from ikemgr_lab.pki import LabCA
from ikemgr_lab.slapd import LdapUser, SlapdInstance, SlapdTls, ldif_attr

SUFFIX = "dc=example,dc=ac,dc=jp"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
LAB_A, LAB_B, POSIX, RAW = (f"cn={n},{GROUPS}" for n in ("lab-123456", "lab-123457", "lab-200001", "raw-200002"))
RAW_SCHEMA = f"""dn: cn=ikemgr-test,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: ikemgr-test
olcAttributeTypes: ( 2.25.{uuid.UUID('6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b').int} NAME 'labAccount'
  DESC 'an account name kept as raw octets' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
"""
HOSTILE_UIDS = ["a; rm -rf /", ".*", "x" * 300, "Alice", "$(reboot)"]


@dataclass(frozen=True)
class Directory:
    slapd: SlapdInstance
    ca: Path
    other_ca: Path
    people: dict[str, str]  # uid → DN


def b64_attr(name: str, value: bytes) -> str:
    return f"{name}:: {base64.b64encode(value).decode()}"


def group_ldif(dn: str, members: list[str]) -> str:
    cn = dn.split(",", 1)[0].split("=", 1)[1]
    return "\n".join([ldif_attr("dn", dn), "objectClass: groupOfNames", ldif_attr("cn", cn),
                      *(ldif_attr("member", m) for m in members)]) + "\n"


def member_change(group: str, op: str, member: str) -> str:
    return f"{ldif_attr('dn', group)}\nchangetype: modify\n{op}: member\n{ldif_attr('member', member)}\n"


def tls_slapd(root: Path, ca: LabCA) -> SlapdInstance:
    issued = ca.issue("slapd", "ldap.example.ac.jp", ["127.0.0.1", "ldap.example.ac.jp"], ["serverAuth"])
    tls = SlapdTls(issued.cert, issued.key, ca.cert, ldaps_port=free_port(), require=True)
    return SlapdInstance(root / "slapd", SUFFIX, free_port(), tls=tls, extra_schema_ldif=RAW_SCHEMA)


@contextmanager
def running() -> Iterator[Directory]:
    """The directory above on a TLS-only slapd, with its own CA and a second, foreign CA."""
    root = Path(tempfile.mkdtemp(prefix="ikt-ldt-"))
    try:
        ca, other = LabCA(root / "ca", "Example University"), LabCA(root / "other", "Other Org")
        ca.create()
        other.create()
        inst = tls_slapd(root, ca)
        inst.start()
        try:
            inst.add_ou("people")
            inst.add_ou("groups")
            uids = ["alice", "bob", "carol", "dan", "erin"]
            dns = inst.add_users([LdapUser(u, f"{u}-pw", disabled=u == "erin") for u in uids], under=PEOPLE)
            people = dict(zip(uids, dns, strict=True))
            # two entries whose labAccount is raw bytes: one fine, one not UTF-8
            for cn, raw in (("rawok", b"dan"), ("rawbad", b"\xff\xfe-dan")):
                inst.ldapadd("\n".join([ldif_attr("dn", f"cn={cn},{PEOPLE}"), "objectClass: person",
                                        "objectClass: extensibleObject", ldif_attr("cn", cn), ldif_attr("sn", cn),
                                        b64_attr("labAccount", raw)]) + "\n")
            inst.ldapadd(group_ldif(LAB_A, [people["alice"], people["bob"], people["carol"]]))
            inst.ldapadd(group_ldif(LAB_B, [people["alice"], people["dan"], f"uid=ghost,{PEOPLE}"]))
            inst.ldapadd("\n".join([ldif_attr("dn", POSIX), "objectClass: posixGroup", ldif_attr("cn", "lab-200001"),
                                    "gidNumber: 20001", ldif_attr("memberUid", "carol"),
                                    *(ldif_attr("memberUid", u) for u in HOSTILE_UIDS)]) + "\n")
            inst.ldapadd(group_ldif(RAW, [f"cn=rawok,{PEOPLE}", f"cn=rawbad,{PEOPLE}"]))
            yield Directory(inst, ca.cert, other.cert, people)
        finally:
            inst.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
