"""Helpers for the network tests (and the benchmarks): free ports, a real
`srdose listen` subprocess, DCMTK by full path, a fresh PostgreSQL database,
bounded waits. Loopback only."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
STORESCP = "/usr/bin/storescp"
ORTHANC = "/usr/sbin/Orthanc"


def need(path: str) -> str:
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {path} (apt-get install dcmtk orthanc)")
        pytest.skip(f"{path} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def fresh_postgres_db(server_url: str) -> str:
    """URL of a new, empty database on the PostgreSQL server of ``server_url``."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def storescp(out: Path, port: int, aet: str = "SRDOSE", env: dict | None = None):
    """DCMTK's storescp writing what it receives into ``out``, until the block ends."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [need(STORESCP), "-aet", aet, "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(port, 30, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def wait_until(predicate, timeout: float = 60.0, step: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"{what} not met within {timeout} s")


class ListenerProcess:
    """`srdose listen` in a subprocess with its own data directory."""

    def __init__(self, data_dir: Path, port: int, *args: str, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.port = port
        self.args = args
        self.env = {**os.environ, "SRDOSE_DATA_DIR": str(self.data_dir), **(env or {})}
        self.proc = None
        self.log = self.data_dir.parent / f"listen-{port}.log"

    def start(self, wait: bool = True) -> ListenerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "srdose", "listen", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for_port(self.port, 60, self.proc)
        return self

    def stop(self, timeout: float = 60) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def srdose(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "srdose", *map(str, args)], env=self.env, capture_output=True, text=True, timeout=300
        )

    def events(self) -> list[dict]:
        out = self.data_dir / "export.csv"
        r = self.srdose("export", "events", "--out", out)
        assert r.returncode == 0, r.stderr
        return list(csv.DictReader(open(out, newline="")))

    def spooled(self) -> int:
        spool = self.data_dir / "spool"
        return len(list(spool.glob("*.dcm"))) if spool.exists() else 0


def storescu(port: int, files, *extra, aet="MAMMO1", aec="SRDOSE", timeout=600):
    """DCMTK storescu (by full path: pip's pynetdicom ships its own)."""
    return subprocess.run(
        [need(STORESCU), "-aet", aet, "-aec", aec, *extra, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class OrthancServer:
    """A real Orthanc on loopback ports, with a temporary storage folder.

    Parameters
    ----------
    workdir
        Folder for its configuration, storage and index.
    modalities
        ``{name: (aet, port)}`` of peers allowed to query/retrieve and to be
        C-MOVE destinations (Orthanc checks the host too: 127.0.0.1).
    lua
        Optional Lua script (e.g. auto-routing).
    """

    def __init__(self, workdir: Path, modalities: dict, lua: str | None = None, aet: str = "ORTHANC"):
        import json

        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        config = {
            "Name": "srdose-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomModalities": {name: [a, "127.0.0.1", p] for name, (a, p) in modalities.items()},
            "Plugins": [],
            "StableAge": 1,
        }
        if lua:
            script = self.workdir / "script.lua"
            script.write_text(lua)
            config["LuaScripts"] = [str(script)]
        self.config = self.workdir / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.proc = None

    def start(self) -> OrthancServer:
        self.proc = subprocess.Popen(
            [need(ORTHANC), str(self.config)],
            cwd=self.workdir,
            stdout=open(self.workdir / "orthanc.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.dicom_port, 60, self.proc)
        wait_for_port(self.http_port, 60, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def load(self, files) -> None:
        """Store files into Orthanc with DCMTK storescu."""
        r = storescu(self.dicom_port, files, aet="LOADER", aec=self.aet)
        assert r.returncode == 0, r.stderr[-2000:]

    def rest(self, path: str):
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as resp:
            return json.loads(resp.read())
