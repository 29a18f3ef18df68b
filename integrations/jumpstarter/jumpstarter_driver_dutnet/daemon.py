"""The one `dutnet load` of an exporter, and its control socket.

Every DutNetwork of the exporter process is a network of that one daemon:
dutnet owns the host's NAT table and the upstream NIC's programs, so two
daemons on one host would fight over them. The first DutNetwork writes the
config file and starts dutnet; the next ones add their network to the file
and ask dutnet to reload it; the last one to close stops dutnet (SIGTERM),
which restores the host.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The control protocol version dutnet speaks (dutnet/src/control/protocol.rs).
PROTOCOL_VERSION = 1
#: The longest reply line read (a status of many networks is a few kB).
MAX_REPLY = 16 * 1024 * 1024
#: How long a reply may take (dutnet answers between reconciles).
REPLY_TIMEOUT = 30.0
#: How long dutnet may take to bring a network up.
START_TIMEOUT = 30.0
#: How long dutnet may take to restore the host after SIGTERM.
STOP_TIMEOUT = 30.0
#: Lines of dutnet's log kept for error messages.
LOG_TAIL = 30

CONFIG_NAME = "jumpstarter-dutnet.yaml"


class DutnetError(RuntimeError):
    """dutnet refused or could not carry out a request.

    `kind` is dutnet's failure kind: `not_found`, `invalid`, `failed`,
    `denied`, or `not_running` when no daemon answers.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def run_dir() -> Path:
    """dutnet's run directory: its pid file, control socket, and our config."""
    return Path(os.environ.get("DUTNET_RUN_DIR") or "/run/dutnet")


def find_binary(configured: str | None) -> str:
    """The dutnet binary: `configured`, else `$DUTNET_BINARY`, else `dutnet` on PATH."""
    name = configured or os.environ.get("DUTNET_BINARY") or "dutnet"
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"the dutnet binary {name!r} was not found: install dutnet on the exporter "
            "(`cargo build --release -p dutnet`, then copy target/release/dutnet to "
            "/usr/local/bin), or give its path as `dutnet_binary:` in the driver config "
            "or in $DUTNET_BINARY"
        )
    return path


def network_name(interface: str) -> str:
    """The dutnet network name of a DutNetwork: its interface, in dutnet's name rule."""
    return re.sub(r"[^a-z0-9_-]", "-", interface.lower())[:32]


def request(verb: str, **fields: Any) -> dict[str, Any]:
    """Sends one request to the running dutnet; returns its `ok` reply."""
    body = {"verb": verb, **{k: v for k, v in fields.items() if v is not None}}
    line = json.dumps({"version": PROTOCOL_VERSION, "request": body}) + "\n"
    path = run_dir() / "dutnet.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(REPLY_TIMEOUT)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DutnetError("not_running", f"dutnet is not running (no daemon at {path})") from exc
        except PermissionError as exc:
            raise DutnetError(
                "denied", f"permission denied on dutnet's control socket {path}: run the exporter as root"
            ) from exc
        sock.sendall(line.encode())
        reply = sock.makefile("rb").readline(MAX_REPLY)
    if not reply:
        raise DutnetError("failed", f"dutnet closed its control socket {path} without answering {verb!r}")
    response = json.loads(reply)["response"]
    if "error" in response:
        raise DutnetError(response["error"]["kind"], response["error"]["message"])
    return response["ok"]


class Daemon:
    """`dutnet load` of the exporter's networks (see the module documentation)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.config = run_dir() / CONFIG_NAME
        self.networks: dict[str, dict[str, Any]] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_tail: deque[str] = deque(maxlen=LOG_TAIL)

    def attach(self, name: str, network: dict[str, Any]) -> None:
        """Adds network `name` and waits until dutnet has it up."""
        if name in self.networks:
            raise ValueError(
                f"two DutNetwork drivers of this exporter use interface {network['interface']!r} "
                f"(dutnet network {name!r}); give each its own interface"
            )
        self.networks[name] = network
        try:
            self._write_config()
            if self.process is None or self.process.poll() is not None:
                self._start()
            else:
                request("reload")
            self._wait_up(name, network["interface"])
        except BaseException:
            self.detach(name)
            raise

    def detach(self, name: str) -> None:
        """Removes network `name`; stops dutnet with the last one."""
        if self.networks.pop(name, None) is None:
            return
        if self.networks and self.process is not None and self.process.poll() is None:
            self._write_config()
            try:
                request("reload")
            except DutnetError as exc:
                logger.warning("dutnet did not drop network %s: %s", name, exc)
            return
        self.stop()

    def stop(self) -> None:
        """SIGTERM to dutnet (it restores the host), then a bounded wait."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
            # What the killed daemon left on the host, from its journal.
            subprocess.run([self.binary, "down"], check=False, timeout=STOP_TIMEOUT)
            logger.error("dutnet did not stop within %ss of SIGTERM: killed it and ran `dutnet down`", STOP_TIMEOUT)

    def _write_config(self) -> None:
        self.config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        networks = [{"name": name, **network} for name, network in self.networks.items()]
        # JSON is YAML: dutnet reads it as any config file.
        text = json.dumps({"networks": networks}, indent=2) + "\n"
        temporary = self.config.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.chmod(0o600)
        temporary.replace(self.config)

    def _start(self) -> None:
        self._stop_leftover()
        self.log_tail.clear()
        self.process = subprocess.Popen(
            [self.binary, "load", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._forward_log, args=(self.process,), daemon=True).start()

    def _stop_leftover(self) -> None:
        """Stops a dutnet an earlier run of this exporter left (the exporter was killed)."""
        pid_file = run_dir() / "dutnet.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if str(self.config).encode() not in cmdline:
            try:
                request("status")
            except DutnetError:
                return  # a stale pid file: `dutnet load` deals with what a crash left
            raise RuntimeError(
                f"another dutnet runs with run directory {run_dir()} (pid {pid}, "
                f"{b' '.join(cmdline).decode(errors='replace').strip()}): stop it (`dutnet down`), "
                "or give this exporter its own run directory with $DUTNET_RUN_DIR"
            )
        logger.warning("stopping dutnet pid %d left by an earlier run of this exporter", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _forward_log(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log_tail.append(line)
            logger.info("dutnet: %s", line)

    def _failure(self, what: str) -> RuntimeError:
        tail = "\n".join(self.log_tail)
        return RuntimeError(f"{what}; dutnet's log ends with:\n{tail}")

    def _wait_up(self, name: str, interface: str) -> None:
        """Until dutnet reports network `name` up; its problem if it fails."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                # Let the log thread catch the last lines.
                time.sleep(0.2)
                raise self._failure(f"dutnet exited ({code}) instead of bringing network {name!r} up")
            try:
                networks = request("status")["networks"]
            except DutnetError:
                networks = []  # the control socket is not there yet
            for network in networks:
                if network["name"] != name:
                    continue
                if network["state"] == "up":
                    return
                if network["state"] == "failed":
                    raise self._failure(f"dutnet could not bring network {name!r} up: {network.get('problem')}")
                if network["state"] == "waiting" and not Path(f"/sys/class/net/{interface}").exists():
                    logger.warning("interface %s does not exist yet: dutnet takes it over when it appears", interface)
                    return
            time.sleep(0.1)
        raise self._failure(f"dutnet did not bring network {name!r} up within {START_TIMEOUT}s")


_lock = threading.Lock()
_daemon: Daemon | None = None


def attach(binary: str, name: str, network: dict[str, Any]) -> None:
    """Adds a network to the exporter's dutnet, starting it if need be."""
    global _daemon
    with _lock:
        if _daemon is None or not _daemon.networks:
            _daemon = Daemon(binary)
        elif _daemon.binary != binary:
            raise ValueError(
                f"this exporter's dutnet is {_daemon.binary}; every DutNetwork of one exporter "
                f"runs on one dutnet, so `dutnet_binary: {binary}` cannot differ"
            )
        _daemon.attach(name, network)


def detach(name: str) -> None:
    """Removes a network from the exporter's dutnet; stops it after the last one."""
    with _lock:
        if _daemon is not None:
            _daemon.detach(name)
