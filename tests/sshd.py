"""A real OpenSSH server on 127.0.0.1 for the hosts tests: its own host key, key-only login as
the user running the tests, its own port, config and log, stopped at the end. Debian's
`openssh-server` (`.ci/run` installs it)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)


@dataclass
class SshServer:
    port: int
    user: str
    identity: Path  # the client's private key
    known_hosts: Path
    log: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    address: str = "127.0.0.1"
    netns: str | None = None  # its own network namespace, reached over a veth pair
    veth: str | None = None  # this side of the pair: down cuts the host off

    def start(self) -> None:
        assert SSHD is not None
        run_in = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*run_in, SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("a"))
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((self.address, self.port)) == 0:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """The host goes away: the listener, and every connection it serves (sshd's
        per-connection processes are its children, in its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            import psutil

            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(procs, timeout=10)
            self.proc.wait(timeout=10)

    def freeze(self, frozen: bool = True) -> None:
        """The host hangs (SIGSTOP), or goes on (SIGCONT): its connections stay open and
        nothing answers on them, as on a machine stuck in swap or a kernel hang."""
        import psutil

        assert self.proc is not None
        procs = [psutil.Process(self.proc.pid)]
        procs += procs[0].children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.suspend() if frozen else p.resume()

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}"

    def cut(self) -> None:
        """The network between here and the host goes down: packets vanish (no refusal),
        as when a machine or its link dies."""
        assert self.veth
        subprocess.run(["ip", "link", "set", self.veth, "down"], check=True)

    def mend(self) -> None:
        assert self.veth
        subprocess.run(["ip", "link", "set", self.veth, "up"], check=True)

    def host_config(self) -> dict[str, object]:
        """The `hosts:` entry a user would write for it."""
        return {"ssh": self.target, "port": self.port, "identity": str(self.identity),
                "ssh_options": [f"UserKnownHostsFile={self.known_hosts}",
                                "StrictHostKeyChecking=yes"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NETNS = shutil.which("ip") is not None and os.geteuid() == 0


@contextmanager
def netns_pair() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair: (namespace, this side's
    device, the address inside). Names and the /30 subnet are unique per call, so tests on
    several cores do not meet."""
    import random

    tag = f"{os.getpid() % 100000:05d}{random.randrange(100):02d}"
    ns, here, there = f"aoh{tag}", f"aoa{tag}", f"aob{tag}"
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    while True:
        net = f"10.{random.randrange(64, 128)}.{random.randrange(256)}."
        if net not in used:
            break
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        sh("ip", "link", "set", there, "netns", ns)
        sh("ip", "addr", "add", f"{net}1/30", "dev", here)
        sh("ip", "link", "set", here, "up")
        for cmd in (["ip", "addr", "add", f"{net}2/30", "dev", there],
                    ["ip", "link", "set", there, "up"], ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", ns, *cmd)
        yield ns, here, f"{net}2"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the pair


@contextmanager
def sshd(folder: Path, setenv: dict[str, str] | None = None,
         netns: tuple[str, str, str] | None = None) -> Iterator[SshServer]:
    """`setenv`: variables every login gets (sshd's SetEnv), e.g. a TMUX_TMPDIR of its own,
    so two "hosts" on this one machine keep separate tmux servers as two machines would.
    `netns` (from `netns_pair`): the sshd runs in that namespace, on its address."""
    assert SSHD is not None
    address = netns[2] if netns else "127.0.0.1"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    os.chmod(folder / "authorized_keys", 0o600)
    port = _free_port()
    host_pub = (folder / "host_key.pub").read_text().split()[:2]
    (folder / "known_hosts").write_text(f"[{address}]:{port} {' '.join(host_pub)}\n")
    log = folder / "sshd.log"
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", f"ListenAddress {address}", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        f"PidFile {folder / 'sshd.pid'}", "MaxSessions 50", "MaxStartups 50",
        "LogLevel VERBOSE",
        *([f"SetEnv {' '.join(f'{k}={v}' for k, v in setenv.items())}"] if setenv else []),
        ""]))
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation folder
    log.write_text("")
    server = SshServer(port, getpass.getuser(), folder / "client_key", folder / "known_hosts",
                       log, folder / "sshd_config", address=address,
                       netns=netns[0] if netns else None, veth=netns[1] if netns else None)
    server.start()
    try:
        yield server
    finally:
        server.stop()
