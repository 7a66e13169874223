"""Lab member hosts on this machine: one network namespace per organization (the netns
backend's namespaces and bridge, reused as they are) with its own sshd, so that the ansible
backend deploys over real SSH exactly as it would to a member's own host.

Everything lives under `<state_dir>/ansible/lab/`:

    client_ed25519[.pub]      the controller's key (0600), authorised on every lab host
    known_hosts               each host's address and host key: strict host key checking
    <org>/ssh_host_ed25519_key   that host's key (0600), sshd_config, sshd.log
    lab.json                  the sshd pids (recorded before anything else is created)

A host's address is its organization's first netns node address (198.18.0.0/15); every node
of the organization runs on that one host, on its own ports, as on a real member host.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testbed.backends import process
from testbed.backends.base import NodeProcess
from testbed.backends.netns import NetnsBackend, require_root, sh
from testbed.errors import BackendError
from testbed.poll import poll_until
from testbed.state import write_json_atomic

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
SSH_PORT = 22


@dataclass(frozen=True)
class SshHost:
    """How the controller reaches one member host."""

    org: str
    address: str
    user: str
    key_file: str
    known_hosts: str
    port: int = SSH_PORT


def sshd_config(org_dir: Path, address: str, authorized_keys: Path) -> str:
    return "\n".join([
        f"ListenAddress {address}:{SSH_PORT}",
        f"HostKey {org_dir / 'ssh_host_ed25519_key'}",
        f"PidFile {org_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the key files are 0600, but the state dir may sit under a shared temp dir
        "PrintMotd no",
        "MaxStartups 64:30:128",  # ansible opens several connections at once
        "MaxSessions 64",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "LogLevel INFO",
        "",
    ])


def ssh_keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    result = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise BackendError(f"ssh-keygen failed for {path}: {result.stderr.strip()}")
    path.chmod(0o600)


class LabHosts:
    """One sshd per organization namespace; `up` and `down` are idempotent."""

    def __init__(self, network: str, state_dir: Path) -> None:
        self.network = network
        self.root = Path(state_dir) / "ansible" / "lab"
        self.record_file = self.root / "lab.json"
        self.netns = NetnsBackend(network=network, state_dir=state_dir)

    # ---- facts --------------------------------------------------------------------------
    def address(self, org_index: int) -> str:
        return self.netns.host_for(org_index, 0)

    @property
    def client_key(self) -> Path:
        return self.root / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def host_root(self, org: str) -> Path:
        """The lab host's stand-in for /opt/cti-testbed/<network> (namespaces share the filesystem)."""
        return self.root.parent / "hosts" / org

    def hosts(self, orgs: list[str]) -> list[SshHost]:
        return [SshHost(org=org, address=self.address(i), user="root", key_file=str(self.client_key),
                        known_hosts=str(self.known_hosts)) for i, org in enumerate(orgs)]

    def _record(self) -> dict:
        try:
            return json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return {"sshd": []}

    def _sshd_procs(self) -> list[NodeProcess]:
        return [NodeProcess(name=f"sshd-{e['org']}", pid=e["pid"], marker=e["marker"]) for e in self._record().get("sshd", [])]

    def is_up(self, orgs: list[str]) -> bool:
        procs = {p.name: p for p in self._sshd_procs()}
        return all(f"sshd-{org}" in procs and process.is_alive(procs[f"sshd-{org}"]) for org in orgs)

    # ---- lifecycle ----------------------------------------------------------------------
    def up(self, orgs: list[str], timeout: float = 30.0) -> list[SshHost]:
        """Namespaces (netns backend), keys, one sshd per organization; returns once each answers."""
        require_root()
        if not Path(SSHD).exists() or not shutil.which("ssh-keygen"):
            raise BackendError("the ansible backend's lab hosts need OpenSSH's sshd and ssh-keygen",
                               hint="apt-get install -y openssh-server")
        self.down()
        self.netns.prepare(orgs)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json_atomic(self.record_file, {"network": self.network, "sshd": []})
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        ssh_keygen(self.client_key, f"testbed-controller@{self.network}")
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        known: list[str] = []
        hosts = self.hosts(orgs)
        for index, host in enumerate(hosts):
            org_dir = self.root / host.org
            org_dir.mkdir(exist_ok=True, mode=0o700)
            host_key = org_dir / "ssh_host_ed25519_key"
            ssh_keygen(host_key, f"{host.org}@{self.network}")
            key_type, key_data = host_key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"{host.address} {key_type} {key_data}")
            config = org_dir / "sshd_config"
            config.write_text(sshd_config(org_dir, host.address, authorized))
            sh(self.netns.plan.address_command(host.org, index, host.address))
            self._spawn_sshd(host, config, org_dir / "sshd.log")
        self.known_hosts.write_text("\n".join(known) + "\n")
        for host in hosts:
            self._wait_ssh(host, timeout)
        return hosts

    def _spawn_sshd(self, host: SshHost, config: Path, log: Path) -> None:
        marker = str(config)
        argv = [SSHD, "-D", "-e", "-f", str(config)]
        proc = process.spawn(f"sshd-{host.org}", argv, {}, log, marker, prefix=self.netns.plan.exec_prefix(host.org))
        record = self._record()
        record.setdefault("sshd", []).append({"org": host.org, "pid": proc.pid, "marker": marker})
        write_json_atomic(self.record_file, record)

    def _wait_ssh(self, host: SshHost, timeout: float) -> None:
        def answers() -> bool:
            try:
                with socket.create_connection((host.address, host.port), timeout=2) as sock:
                    return sock.recv(64).startswith(b"SSH-")
            except OSError:
                return False

        def silent() -> BackendError:
            log = self.root / host.org / "sshd.log"
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            return BackendError(f"sshd of lab host {host.org} ({host.address}) does not answer: "
                                f"{tail[0] if tail else 'no output'}", hint=f"log: {log}")

        poll_until(answers, timeout=timeout, error=silent)

    def down(self) -> None:
        """Stop every recorded sshd by pid, then remove the namespaces and links (netns backend)."""
        for proc in self._sshd_procs():
            process.stop(proc, timeout=5)
        if self.record_file.exists():
            record = self._record()
            record["sshd"] = []
            write_json_atomic(self.record_file, record)
        self.netns.teardown()

    def remaining_pids(self) -> list[int]:
        return [p.pid for p in self._sshd_procs() if process.is_alive(p)]


def ssh_options(host: SshHost, control_dir: Path | None = None) -> list[str]:
    """ssh -o options: the host's key, strict checking against our known_hosts, no agent, no password."""
    opts = [
        "-o", f"UserKnownHostsFile={host.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
        "-o", "ConnectTimeout=10",
    ]
    if control_dir is not None:
        opts += ["-o", "ControlMaster=auto", "-o", "ControlPersist=30s", "-o", f"ControlPath={control_dir}/%C"]
    return opts


def ssh_argv(host: SshHost, command: str, control_dir: Path | None = None) -> list[str]:
    return ["ssh", *ssh_options(host, control_dir), "-i", host.key_file, "-p", str(host.port),
            f"{host.user}@{host.address}", command]
