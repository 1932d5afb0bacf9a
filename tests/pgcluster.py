"""A throwaway PostgreSQL server for tests (and benches) that stop, restart or kill it.

The shared server at 127.0.0.1:5432 is everyone's: it is never stopped or restarted. A test
that takes the database away starts its own cluster instead: `initdb` into a temporary folder,
`pg_ctl start` on a free port of 127.0.0.1, trust authentication for user postgres, and
removes it all afterwards.

    with PgCluster.create() as cluster:      # skips (CI: fails) when the binaries are missing
        url = cluster.url                      # postgresql://postgres@127.0.0.1:PORT/postgres
        cluster.stop()                         # fast shutdown: sessions are ended, port closed
        cluster.start()
        cluster.kill()                         # SIGKILL of the postmaster: crash recovery next start

initdb and postgres refuse to run as root; as root (the project's machines and CI) every
command runs as user postgres via `runuser -u postgres --`, in a folder it owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT = 60


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable_reason() -> str | None:
    """Why no throwaway cluster can be made here, or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (BIN / tool).is_file():
            return f"PostgreSQL server binaries not found in {BIN} (set PG_BIN)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root without runuser: initdb refuses root"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no user postgres to run initdb as"
    return None


def require() -> None:
    """Skip the calling test when no cluster can be made; on CI that is a failure."""
    import pytest

    reason = unavailable_reason()
    if reason is None:
        return
    if _on_ci():
        pytest.fail(f"a throwaway PostgreSQL cluster is needed on CI: {reason}")
    pytest.skip(reason)


class PgCluster:
    """One PostgreSQL server of our own, in a temporary folder, on a free port."""

    def __init__(self, root: Path, port: int):
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    # Making and removing -------------------------------------------------------------------
    @classmethod
    def create(cls, *, settings: dict[str, str] | None = None) -> PgCluster:
        """initdb a new cluster and start it. `settings` are postgresql.conf lines."""
        root = Path(tempfile.mkdtemp(prefix="suarawarga-pg-"))
        cluster = cls(root, free_port())
        try:
            if os.geteuid() == 0:
                import pwd

                entry = pwd.getpwnam("postgres")
                os.chown(root, entry.pw_uid, entry.pw_gid)
            cluster._run(
                BIN / "initdb",
                "-D",
                str(cluster.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",  # a throwaway: nothing to make durable against a power cut
            )
            conf = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(cluster.port),
                "unix_socket_directories": f"'{root}'",  # not /var/run/postgresql, the shared one's
                "max_connections": "100",
                "shared_buffers": "32MB",
                "logging_collector": "off",
                **(settings or {}),
            }
            with (cluster.data / "postgresql.auto.conf").open("a", encoding="utf-8") as f:
                for key, value in conf.items():
                    f.write(f"{key} = {value}\n")
            cluster.start()
        except BaseException:
            cluster.cleanup()
            raise
        return cluster

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop the server (immediately) and remove its folder."""
        with contextlib.suppress(Exception):
            if self.running:
                self._pg_ctl("stop", "-m", "immediate")
        with contextlib.suppress(Exception):
            pid = self.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    # Running ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self.log), "-t", str(START_TIMEOUT))

    def stop(self, mode: str = "fast") -> None:
        """Stop: "fast" ends every session (clients see 57P01), "immediate" is an abort
        without a checkpoint (crash recovery at the next start)."""
        self._pg_ctl("stop", "-m", mode, "-t", str(START_TIMEOUT))

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, like the machine losing the process:
        no shutdown runs; the next start() recovers from the WAL."""
        pid = self.pid
        if pid is None:
            return
        children = self.backend_pids()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in (pid, *children)):
            time.sleep(0.05)
        # What a crashed server leaves behind and a new one refuses to start over.
        for stale in (self.data / "postmaster.pid", self.root / f".s.PGSQL.{self.port}.lock"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        pid = int(first) if first.strip().isdigit() else None
        return pid if pid is not None and _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def backend_pids(self) -> list[int]:
        """Every process the postmaster forked (backends, checkpointer, WAL writer...)."""
        pid = self.pid
        if pid is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU of the postmaster and every process it forked that is still
        running, plus what its ended children were charged (cutime/cstime): the server's
        whole CPU so far. Read from /proc, so the server must run on this machine."""
        pid = self.pid
        if pid is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for p in (pid, *self.backend_pids()):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            # utime stime cutime cstime are fields 14-17 of stat; index 11-14 after the name.
            total += sum(int(v) for v in fields[11:15])
        return total / tick

    def server_log(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # Helpers -----------------------------------------------------------------------------------
    def _pg_ctl(self, *args: str) -> None:
        self._run(BIN / "pg_ctl", "-D", str(self.data), "-w", *args)

    def _run(self, *argv: object) -> None:
        cmd = [str(a) for a in argv]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT + 30, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{self.server_log()[-2000:]}"
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (already dead, not yet reaped) is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
