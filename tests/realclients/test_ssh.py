"""paramiko through a proxy on a real OpenSSH server (Debian's ``openssh-server``).

The test starts its own ``sshd`` on a free loopback port (host key, client key and config in a
temporary directory; key login for the user running the tests) and proves, through
``safeclients.pooled`` over ``paramiko.SSHClient`` (the PARAMIKO profile): every command's output
is its own under threads; after the server is restarted (every session cut), the profile's check
(the transport is active, then an SSH_MSG_IGNORE) replaces each dead client before reuse, so no
call fails; and a fork child that uses the proxy (its own connection) leaves the parent's
session working.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safeclients
from examples.support.processes import free_port, port_answers, wait_until

pytestmark = pytest.mark.integration

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


class SshServer:
    """An ``sshd -D`` of the test's own, stopped by PID; ``restart()`` keeps port and keys."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="safeclients-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        self.key = self.scratch / "client_key"
        self._proc: subprocess.Popen[bytes] | None = None
        for path in (self.scratch / "host_key", self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                check=True,
                timeout=30,
            )
        shutil.copy(f"{self.key}.pub", self.scratch / "authorized_keys")
        (self.scratch / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.scratch / 'host_key'}\n"
            f"AuthorizedKeysFile {self.scratch / 'authorized_keys'}\n"
            f"PidFile {self.scratch / 'sshd.pid'}\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "MaxSessions 50\n"
            "MaxStartups 50\n"
        )

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.scratch / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.scratch / "sshd.log", "ab"),  # noqa: SIM115 (closed with the child)
            start_new_session=True,
        )
        wait_until(lambda: port_answers("127.0.0.1", self.port), 10, "sshd to listen")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        import psutil  # type: ignore[import-untyped]

        # sshd and its per-connection children (each in a session of its own): by PID, so
        # every session is cut, as a server restart or a reboot does.
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        proc.terminate()
        proc.wait(10)
        for child in children:
            try:
                child.terminate()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(children, timeout=10)

    def factory(self) -> Any:
        import paramiko  # type: ignore[import-untyped]

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            "127.0.0.1",
            port=self.port,
            username=self.user,
            key_filename=str(self.key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
            banner_timeout=10,
            auth_timeout=10,
        )
        return client


@pytest.fixture
def sshd() -> Iterator[SshServer]:
    server = SshServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.scratch, ignore_errors=True)


def _echo(proxy: Any, token: str) -> str:
    _, stdout, _ = proxy.exec_command(f"echo {token}", timeout=10)
    return str(stdout.read().decode().strip())


def test_ssh_commands_get_their_own_output_across_threads_and_a_restart(sshd: SshServer) -> None:
    proxy = safeclients.pooled(sshd.factory, size=2, timeout=30, check_interval=0)
    wrong: list[str] = []
    lock = threading.Lock()  # guards wrong

    def load(tag: str) -> None:
        for n in range(5):
            token = f"{tag}-{n}"
            answer = _echo(proxy, token)
            if answer != token:
                with lock:
                    wrong.append(f"{token} -> {answer}")

    try:
        threads = [threading.Thread(target=load, args=(f"t{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads) and wrong == [], wrong
        sshd.stop()
        sshd.start()
        assert [_echo(proxy, f"after-{n}") for n in range(3)] == [f"after-{n}" for n in range(3)]
        stats = safeclients.stats(proxy)
        assert stats.discarded >= 1, "the check replaced the clients the restart cut"
    finally:
        safeclients.dispose(proxy)


def test_ssh_fork_child_leaves_the_parents_session_working(sshd: SshServer) -> None:
    proxy = safeclients.per_process(sshd.factory)
    try:
        assert _echo(proxy, "parent-1") == "parent-1"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if _echo(proxy, "child") == "child" else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's command failed"
        assert _echo(proxy, "parent-2") == "parent-2"
        assert safeclients.stats(proxy).created == 1
    finally:
        safeclients.dispose(proxy)
