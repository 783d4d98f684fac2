"""`lab up|status|test|down`: the whole service in namespaces, phase by phase, timed.

``up`` is a straight line of phases; each is timed and printed as it ends, and a failure
names its phase and carries the daemon's log tail. Nothing here decides gateway
behaviour: the gateway is rendered, applied and watched by ikemgr's own commands
(run as subprocesses, exactly as an operator runs them), and the lab only builds the
world around it and measures what each destination saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ikemgr.checks.charon import CharonInstance
from ikemgr.checks.freeradius import RadiusdInstance, prepare_raddb
from ikemgr.errors import ApplyFailed, IkemgrError, UsageError
from ikemgr.render.outputs import RADDB_PREFIX
from ikemgr.render.profiles.common import ProfileFile
from ikemgr.render.templates import Output
from ikemgr_lab import charons, postgres, procs, sourcelog
from ikemgr_lab.model import Client, LabConfig, LabDocument
from ikemgr_lab.pki import LabCA
from ikemgr_lab.slapd import LdapUser, SlapdInstance, nt_hash
from ikemgr_lab.topology import Topology, build, lab_of, plan

#: the lab is a repository tool (never in the product wheel): the checkout it lives in
LAB_PROJECT = Path(__file__).resolve().parent.parent
REPO = LAB_PROJECT.parent
DEFAULT_LAB_CONFIG = REPO / "examples" / "lab.yaml"
#: one file of each package the lab runs; any missing → scripts/setup.sh installs the set
NEEDED_BINARIES = ("/usr/lib/ipsec/charon", "/usr/sbin/swanctl", "/usr/bin/pki", "/usr/sbin/freeradius",
                   "/usr/bin/smbencrypt", "/usr/sbin/slapd", "/usr/bin/ldapadd", "/usr/sbin/nft",
                   "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
                   "/usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so",
                   "/usr/lib/ipsec/plugins/libstrongswan-openssl.so",
                   "/usr/lib/ipsec/plugins/libstrongswan-curve25519.so")
SETTLE_SECONDS = 10.0
LDAP_PORT = 389


def ikemgr_argv(*args: str) -> list[str]:
    """This same ikemgr, as a subprocess (the commands an operator would type)."""
    exe = Path(sys.executable).parent / "ikemgr"
    if exe.exists():
        return [str(exe), *args]
    return [sys.executable, "-c", "from ikemgr.cli import main; main()", *args]


@dataclass
class Phases:
    """Times each phase and reports it as it ends (progress on long steps)."""

    report: Callable[[str], None]
    times: list[tuple[str, float, str]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def run(self, name: str, fn: Callable[[], str | None],
            log: tuple[str, Callable[[], Path | None]] | None = None) -> None:
        """Run one phase; a failure names it and carries ``log``'s tail (daemon, path)."""
        start = time.monotonic()
        self.report(f"[{start - self.t0:5.1f}s] {name} …")
        try:
            detail = fn() or ""
        except IkemgrError as e:
            msg = f"lab up: phase '{name}' failed: {e.message}"
            path = log[1]() if log is not None else None
            if log is not None and path is not None and path.exists():
                # the tail, unless the error already ends with it (a daemon that did not come up)
                if procs.tail(path, 1) in e.message:
                    msg += f"; {log[0]} log: {path}"
                else:
                    msg += f"; {log[0]} log tail ({path}): {procs.tail(path)}"
            raise ApplyFailed(msg) from None
        took = time.monotonic() - start
        self.times.append((name, took, detail))
        self.report(f"[{time.monotonic() - self.t0:5.1f}s] {name}: {took:.2f}s {detail}".rstrip())

    @property
    def total(self) -> float:
        return time.monotonic() - self.t0


class Lab:
    """One lab, described by a config with a ``lab:`` section."""

    def __init__(self, cfg: LabDocument, config_path: Path) -> None:
        self.cfg = cfg
        self.config_path = config_path.resolve()
        self.lab: LabConfig = lab_of(cfg)
        self.topo: Topology = plan(cfg)
        self.state = self.lab.state_dir
        if self.lab.policy_engine == "hook" and cfg.strongswan.updown is None:
            raise UsageError("lab.policy_engine: hook needs strongswan.updown (e.g. "
                             "<repo>/scripts/ikemgr-updown --config <this file>)")

    # ------------------------------------------------------------------ paths / names
    def ns(self, node: str) -> str:
        return self.topo.ns(node)

    @property
    def gw_dir(self) -> Path:
        return self.state / "gw"

    @property
    def rendered(self) -> Path:
        return self.state / "gw" / "etc"

    def client_dir(self, c: Client) -> Path:
        return self.state / "clients" / c.name

    def gateway(self) -> CharonInstance:
        return charons.gateway_instance(self.cfg, self.gw_dir, self.ns("gw"), self.rendered)

    def client_charon(self, c: Client) -> CharonInstance:
        return charons.client_instance(self.client_dir(c), self.ns(c.name))

    def ikemgr(self, *args: str, netns: str | None = None, timeout: float = 60) -> dict[str, Any]:
        argv = ikemgr_argv(*args, "-c", str(self.config_path), "--json")
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            out = json.loads(r.stdout)
        except json.JSONDecodeError:
            out = {"ok": False, "error": {"message": (r.stderr or r.stdout).strip()[-600:]}}
        if r.returncode != 0:
            msg = out.get("error", {}).get("message") or "; ".join(out.get("errors", [])) or r.stderr.strip()
            raise ApplyFailed(f"ikemgr {' '.join(args)} failed ({r.returncode}): {msg}")
        return out

    # ------------------------------------------------------------------ up
    def up(self, report: Callable[[str], None]) -> dict[str, Any]:
        ph = Phases(report)
        ph.run("packages", self._packages)
        ph.run("clean", lambda: self._down_detail(self.down()))
        ph.run("topology", self._topology)
        ph.run("pki", self._pki)
        ph.run("ldap", self._ldap, log=("slapd", lambda: self.state / "ldap" / "slapd.out"))
        ph.run("render", self._render)
        ph.run("radius", self._radius, log=("FreeRADIUS", lambda: self.radius_log))
        ph.run("registration db", self._grants, log=("PostgreSQL", self._postgres_log))
        ph.run("gateway charon", self._gateway, log=("charon", lambda: self.gateway().log))
        ph.run("apply", self._apply)
        ph.run("watch", self._watch)
        ph.run("destinations", self._destinations)
        ph.run("client charons", self._clients)
        ph.run("connect", self._connect)
        proof: list[dict[str, Any]] = []

        def prove() -> str:
            # per-user policy follows charon's events asynchronously: measure until the
            # promises hold or the settle time is over (the table shows what was seen last)
            deadline = time.monotonic() + SETTLE_SECONDS
            rounds = 0
            while True:
                rows = self.proof()
                rounds += 1
                if not self.expectations(rows) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            proof.extend(rows)
            return f"{len(proof)} clients, {rounds} round(s)"

        ph.run("proof", prove)
        return {"phases": [{"phase": n, "seconds": round(t, 2), "detail": d} for n, t, d in ph.times],
                "total_seconds": round(ph.total, 1), "proof": proof, "state_dir": str(self.state)}

    def _packages(self) -> str:
        missing = [b for b in NEEDED_BINARIES if not Path(b).exists()]
        if not missing:
            return "all present"
        setup = REPO / "scripts" / "setup.sh"
        r = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=1800, check=False)
        if r.returncode != 0:
            raise ApplyFailed(f"scripts/setup.sh failed: {procs_tail_text(r.stdout + r.stderr)}")
        return f"installed (missing were {', '.join(Path(m).name for m in missing)})"

    def _topology(self) -> str:
        self.state.mkdir(parents=True, exist_ok=True)
        n = build(self.topo)
        return f"{len(self.topo.namespaces)} namespaces, {n} steps"

    def _pki(self) -> str:
        ca = LabCA(self.pki_dir, self.lab.organisation)
        ca.create()
        gw = self.cfg.gateway
        self.gateway().prepare()
        ca.issue("gateway", gw.fqdn, [gw.fqdn, str(gw.outside.address.ip)], ["serverAuth", "ikeIntermediate"],
                 cert_path=gw.cert, key_path=gw.key)
        gw.ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca.cert, gw.ca)
        eap = self.cfg.eap
        ca.issue("radius", charons.RADIUS_ID, [charons.RADIUS_ID], ["serverAuth"],
                 cert_path=eap.server_cert, key_path=eap.server_key)
        eap.ca_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca.cert, eap.ca_file)
        n = 3
        for c in self.lab.clients:
            if c.auth == "eap-tls":
                # CN = the account (RADIUS checks it against the EAP identity); the SAN is the
                # identity itself, which is how charon finds the certificate for eap_id.
                # <state>/pki/clients/ (a name of its own: no client can overwrite ca.crt)
                ca.issue(c.name, c.identity.split("@")[0], [c.identity], ["clientAuth"],
                         organisation=c.organisation, cert_path=self.client_cert(c),
                         key_path=self.client_cert(c).with_suffix(".key"))
                n += 1
        return f"CA + {n} certificates"

    @property
    def pki_dir(self) -> Path:
        return self.state / "pki"

    def client_cert(self, c: Client) -> Path:
        """An EAP-TLS client's certificate as issued (its key beside it, ``.key``)."""
        return self.pki_dir / "clients" / f"{c.name}.crt"

    def _ldap(self) -> str:
        d = self.lab.directory
        inst = SlapdInstance(self.state / "ldap", d.base_dn, LDAP_PORT, netns=self.ns("ldap"),
                             host=str(self.lab.campus.ldap))
        inst.start()
        if inst.proc is not None:
            procs.record(self.state, "slapd", inst.proc.pid)
        people = inst.add_ou("people")
        # the NT hash is what FreeRADIUS needs for EAP-MSCHAPv2; binds use userPassword
        inst.add_users([LdapUser(a.uid, a.password, nt_hash=nt_hash(a.password)) for a in d.accounts],
                       under=people)
        pw = self.cfg.ldap.bind_password_file
        if self.cfg.ldap.bind_dn is not None and pw is not None:
            if self.cfg.ldap.bind_dn != inst.root_dn:
                raise ApplyFailed(f"ldap.bind_dn must be {inst.root_dn} in the lab")
            _write_secret(pw, inst.root_password)
        return f"{len(d.accounts)} accounts at {inst.uri}"

    def _radius_secret(self) -> str:
        path = self.cfg.radius.secret_file
        if not path.exists():
            _write_secret(path, os.urandom(12).hex())
        return path.read_text().strip()

    def rendered_raddb(self) -> list[Output]:
        """The FreeRADIUS files exactly as `ikemgr render` wrote them."""
        root = self.rendered / RADDB_PREFIX
        return [Output(str(p.relative_to(root)), p.read_text(), mode=p.stat().st_mode & 0o777)
                for p in sorted(root.rglob("*")) if p.is_file()]

    def _radius(self) -> str:
        outputs = self.rendered_raddb()
        if not outputs:
            raise ApplyFailed(f"`ikemgr render` wrote no FreeRADIUS files below "
                              f"{self.rendered / RADDB_PREFIX}")
        work = self.state / "radius"
        raddb = prepare_raddb(work / "raddb", outputs, state_dir=work / "state")
        inst = RadiusdInstance(raddb, work, netns=self.ns("gw"))
        inst.check_config()
        inst.start()
        if inst.proc is not None:
            procs.record(self.state, "freeradius", inst.proc.pid)
        return f"{self.cfg.radius.address}:{self.cfg.radius.auth_port}, EAP {','.join(self.cfg.eap.methods)}"

    @property
    def radius_log(self) -> Path:
        return self.state / "radius" / "radiusd.out"

    def _grants(self) -> str:
        url = self.cfg.database.url
        where = "SQLite"
        if url.startswith("postgresql"):
            host = postgres.target(url)[0]
            if host != str(self.lab.campus.ldap):
                raise UsageError(f"database.url: the lab serves PostgreSQL on lab.campus.ldap "
                                 f"({self.lab.campus.ldap}), not on {host!r}")
            postgres.start(url, self.state / "postgres", self.state, self.ns("ldap"))
            where = f"PostgreSQL on {host}"
        # as on the gateway: ikemgr reaches the database from the gateway's namespace
        for identity in self.lab.allow:
            self.ikemgr("grant", "add", identity, "--note", "lab", netns=self.ns("gw"))
        return f"{len(self.lab.allow)} grants, {where}"

    def _postgres_log(self) -> Path | None:
        if not self.cfg.database.url.startswith("postgresql"):
            return None
        return self.state / "postgres" / "postgres.log"

    def _render(self) -> str:
        self._radius_secret()
        out = self.ikemgr("render", "--out", str(self.rendered))
        return f"{len(out.get('data', {}).get('files', []))} files"

    def _gateway(self) -> str:
        inst = self.gateway()
        inst.prepare()
        charons.install_rendered_swanctl(inst, self.rendered)
        inst.start(timeout=15)
        procs.record(self.state, "charon-gw", inst.proc.pid if inst.proc else 0)
        inst.load_all()
        return f"vici {inst.vici_path}"

    def _apply(self) -> str:
        out = self.ikemgr("apply", "--netns", self.ns("gw"))
        return f"{len(out.get('data', {}).get('changes', []))} changes"

    def _watch(self) -> str:
        if self.lab.policy_engine == "hook":
            return f"none: hook mode (charon's updown runs {self.cfg.strongswan.updown})"
        log = self.state / "watch.log"
        argv = ikemgr_argv("watch", "-c", str(self.config_path))
        pid = procs.start(self.state, "watch", self.ns("gw"), argv, log)
        # ready = its first reconcile is done and it listens on the gateway's VICI socket
        procs.wait_until("ikemgr watch", _contains(log, "connected"), 15, pid, log)
        return f"pid {pid}, listening"

    def destinations(self) -> list[tuple[str, str, str]]:
        """(label, namespace, address) of every place that logs who reached it."""
        out = [("campus server", self.ns("csrv"), str(self.lab.campus.server)),
               ("internet", self.ns("inet"), str(self.lab.internet.server))]
        for j, h in enumerate(self.lab.lab_hosts, start=1):
            out.append((f"lab host {h.vlan}", self.ns(f"lab{j}"), str(h.address)))
        return out

    def _destinations(self) -> str:
        logs = self.state / "seen"
        logs.mkdir(parents=True, exist_ok=True)
        started = []
        for label, ns, addr in self.destinations():
            name = ns.removeprefix(self.lab.prefix)
            argv = [sys.executable, "-m", "ikemgr_lab.sourcelog", "serve", addr, str(self.lab.port),
                    str(logs / f"{name}.log")]
            log = logs / f"{name}.out"
            env = dict(os.environ, PYTHONPATH=str(LAB_PROJECT))
            pid = procs.start(self.state, f"sourcelog-{name}", ns, argv, log, env=env)
            started.append((label, pid, log))
        for label, pid, log in started:
            procs.wait_until(label, _contains(log, "listening"), 10, pid, log)
        return f"{len(started)} servers on port {self.lab.port}"

    def client_profile(self, c: Client) -> list[ProfileFile]:
        """The swanctl profile ``ikemgr profile`` writes for this client's identity."""
        ca_pem = (self.pki_dir / "ca.crt").read_bytes()
        p12 = None
        if c.auth == "eap-tls":
            cert = self.client_cert(c)
            p12 = charons.client_p12(cert, cert.with_suffix(".key"), ca_pem)
        return charons.client_profile(self.cfg, c, ca_pem, p12)

    def _clients(self) -> str:
        for c in self.lab.clients:
            files = self.client_profile(c)
            inst = self.client_charon(c)
            inst.start(timeout=15)
            procs.record(self.state, f"charon-{c.name}", inst.proc.pid if inst.proc else 0)
            # after start: start() lays out an empty /etc/swanctl tree; the client's swanctl
            # dir is the profile directory and nothing else
            charons.install_profile(inst, files)
            inst.load_all()
        return f"{len(self.lab.clients)} charons, swanctl profiles"

    @property
    def client_conn(self) -> str:
        return charons.client_conn(self.cfg)

    def connect(self, c: Client, timeout: int = 20) -> subprocess.CompletedProcess[str]:
        return self.client_charon(c).swanctl("--initiate", "--child", self.client_conn,
                                             "--timeout", str(timeout), check=False, timeout=timeout + 10)

    def disconnect(self, c: Client) -> subprocess.CompletedProcess[str]:
        return self.client_charon(c).swanctl("--terminate", "--ike", self.client_conn,
                                             "--timeout", "10", check=False, timeout=20)

    def _connect(self) -> str:
        todo = [c for c in self.lab.clients if c.connect]
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            results = list(pool.map(self.connect, todo))
        failed = [(c, r) for c, r in zip(todo, results, strict=True) if r.returncode != 0]
        if failed:
            c, r = failed[0]
            inst = self.client_charon(c)
            raise ApplyFailed(f"client {c.name} ({c.identity}) did not connect: "
                              f"{procs_tail_text(r.stdout + r.stderr)}; client log: {inst.log_tail(8)}; "
                              f"gateway log: {self.gateway().log_tail(8)}; "
                              f"radius log: {procs.tail(self.radius_log, 8)}")
        return f"{len(todo)} clients connected"

    # ------------------------------------------------------------------ observation
    def vip(self, c: Client) -> str | None:
        inst = self.client_charon(c)
        if not inst.vici_path.exists():
            return None
        for sa in charons.list_sas(inst.vici_path):
            if sa.get("state") == "ESTABLISHED" and sa.get("local-vips"):
                return str(sa["local-vips"][0])
        return None

    def gateway_sas(self) -> list[dict[str, Any]]:
        return charons.list_sas(self.gateway().vici_path)

    def _tx_packets(self) -> dict[str, int]:
        r = subprocess.run(["ip", "-n", self.ns("gw"), "-j", "-s", "link", "show"], capture_output=True,
                           text=True, timeout=10, check=False)
        try:
            links = json.loads(r.stdout)
        except json.JSONDecodeError:
            return {}
        return {x["ifname"]: int(x.get("stats64", x.get("stats", {})).get("tx", {}).get("packets", 0))
                for x in links}

    def describe(self, dev: str | None) -> str:
        if dev is None:
            return "no traffic left the gateway"
        if dev == self.cfg.gateway.campus.interface:
            return f"{dev} (campus, {self.cfg.gateway.campus.table.name})"
        for v in self.cfg.vlans:
            if dev == v.interface:
                return f"{dev} (lab VLAN {v.number}, {v.table_label})"
        return dev

    def probe_with_path(self, c: Client, address: str) -> tuple[str | None, str]:
        """Connect from ``c`` to ``address``; what it saw, and the gateway interface it left by.

        The interface is measured, not predicted: the campus-side interface whose transmit
        counter grew most during the connection (the lab is quiet; clients are probed one
        by one). This holds for every policy backend, marks included, where ``ip route get``
        cannot see the firewall mark that steers the packet.
        """
        inward = [self.cfg.gateway.campus.interface, *(v.interface for v in self.cfg.vlans)]
        before = self._tx_packets()
        seen = sourcelog.probe(self.ns(c.name), address, self.lab.port)
        after = self._tx_packets()
        grew = {d: after.get(d, 0) - before.get(d, 0) for d in inward}
        dev = max(grew, key=lambda d: grew[d])
        # SYN and the handshake's ACK have left before the server could answer at all
        return seen, self.describe(dev if grew[dev] >= 2 else None)

    def lab_host_for(self, c: Client) -> tuple[str, str, str]:
        """The lab host a client's identity points at (or the first lab host)."""
        vlan = int(c.identity.split("@")[1]) if "@" in c.identity else None
        hosts = self.lab.lab_hosts
        j = next((i for i, h in enumerate(hosts) if h.vlan == vlan), 0)
        h = hosts[j]
        return (f"lab host {h.vlan}", self.ns(f"lab{j + 1}"), str(h.address))

    def seen_by(self, c: Client) -> dict[str, str | None]:
        """What the campus server, the client's lab host and the Internet server saw."""
        port = self.lab.port
        seen, path = self.probe_with_path(c, self.lab_host_for(c)[2])
        return {"campus server": sourcelog.probe(self.ns(c.name), str(self.lab.campus.server), port),
                "lab host": seen, "path": path,
                "internet": sourcelog.probe(self.ns(c.name), str(self.lab.internet.server), port)}

    def proof(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.lab.clients:
            if not c.connect:
                continue
            vip = self.vip(c)
            lab_label, _ns, lab_addr = self.lab_host_for(c)
            seen = self.seen_by(c) if vip else {}
            rows.append({
                "client": c.name, "identity": c.identity, "vip": vip,
                "lab_host": lab_label.removeprefix("lab host "),
                "path": seen.get("path"),
                "campus_server_saw": seen.get("campus server"),
                "lab_host_saw": seen.get("lab host"),
                "internet_saw": seen.get("internet"),
            })
        return rows

    def expectations(self, rows: list[dict[str, Any]]) -> list[str]:
        """What the service promises, checked against the proof rows; returns failures."""
        allowed = set(self.lab.allow)
        outside = str(self.cfg.gateway.outside.address.ip)
        problems = []
        for r in rows:
            c = self.lab.client(r["client"])
            if not r["vip"]:
                problems.append(f"{c.name}: no virtual IP")
                continue
            if r["campus_server_saw"] not in (r["vip"], *self._snat_for(c)):
                problems.append(f"{c.name}: campus server saw {r['campus_server_saw']}")
            if r["internet_saw"] != outside:
                problems.append(f"{c.name}: internet saw {r['internet_saw']}, want {outside}")
            snat = self._snat_for(c)
            vlan = self.cfg.vlan(int(c.identity.split("@")[1])) if snat else None
            campus_if = self.cfg.gateway.campus.interface
            want_if = vlan.interface if (c.identity in allowed and vlan) else campus_if
            if r["path"] is not None and not str(r["path"]).startswith(f"{want_if} "):
                problems.append(f"{c.name}: left the gateway by {r['path']}, want {want_if}")
            if c.identity in allowed and snat:
                if r["lab_host_saw"] != snat[0]:
                    problems.append(f"{c.name}: lab host saw {r['lab_host_saw']}, "
                                    f"want {snat[0]} (broadcast-2)")
            else:
                all_snat = {str(v.snat_address) for v in self.cfg.vlans}
                if r["lab_host_saw"] in all_snat:
                    problems.append(f"{c.name}: not on the allow-list but reached the lab host as "
                                    f"{r['lab_host_saw']}")
        return problems

    def _snat_for(self, c: Client) -> tuple[str, ...]:
        if "@" not in c.identity:
            return ()
        v = self.cfg.vlan(int(c.identity.split("@")[1]))
        return (str(v.snat_address),) if v is not None else ()

    def status(self) -> dict[str, Any]:
        present = set(procs.namespaces(self.lab.prefix))
        daemons = []
        d = procs.pid_dir(self.state)
        for f in sorted(d.glob("*.pid")) if d.is_dir() else []:
            try:
                pid = int(f.read_text().split()[0])
            except (ValueError, IndexError):
                continue
            daemons.append({"name": f.stem, "pid": pid, "alive": procs.alive(pid)})
        sas = []
        if self.gateway().vici_path.exists():
            try:
                for sa in self.gateway_sas():
                    sas.append({"identity": sa.get("remote-eap-id") or sa.get("remote-id"),
                                "remote": f"{sa.get('remote-host')}[{sa.get('remote-port')}]",
                                "vip": ",".join(sa.get("remote-vips", [])), "state": sa.get("state"),
                                "nat_remote": sa.get("nat-remote", "no")})
            except OSError:
                pass
        return {"namespaces": sorted(present), "expected_namespaces": list(self.topo.namespaces),
                "daemons": daemons, "sas": sas}

    # ------------------------------------------------------------------ down
    def down(self) -> dict[str, Any]:
        return teardown(self.lab.prefix, self.state, self.cfg.routing.rt_tables_file)

    @staticmethod
    def _down_detail(d: dict[str, Any]) -> str:
        return f"removed {d['namespaces']} namespaces, {d['processes']} processes"


def teardown(prefix: str, state: Path, rt_tables_file: Path | None) -> dict[str, Any]:
    """Everything the lab made, gone; safe to run any number of times and after a crash."""
    counts = procs.stop_everything(state, prefix)
    removed_files = []
    if rt_tables_file is not None and rt_tables_file.exists():
        rt_tables_file.unlink()
        removed_files.append(str(rt_tables_file))
    if state.exists():
        shutil.rmtree(state, ignore_errors=True)
        removed_files.append(str(state))
    return {**counts, "files": removed_files}


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def _contains(p: Path, text: str) -> Callable[[], bool]:
    return lambda: text in _read(p)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def procs_tail_text(text: str, lines: int = 8) -> str:
    keep = [ln for ln in text.splitlines() if ln.strip() and "TPM 2.0" not in ln and "plugin 'tpm'" not in ln]
    return " | ".join(keep[-lines:])

