"""jumpstarter's DutNetwork driver, with dutnet doing the work.

The configuration fields, the exported methods, their signatures and return
shapes are those of `jumpstarter_driver_dut_network.driver.DutNetwork`
0.9.0, and the client is jumpstarter's own; each method asks the exporter's
dutnet (see `daemon`) through its control socket.
"""

import asyncio
import asyncio.subprocess
import dataclasses
import subprocess
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal

from jumpstarter_driver_dut_network.driver import DutNetwork as JumpstarterDutNetwork
from jumpstarter_driver_dut_network.driver import FilterConfig, InterfaceStatus, NetworkStatus

from . import daemon
from .daemon import DutnetError
from jumpstarter.driver import Driver, export

#: tcpdump options followed by a value that `dutnet capture` has no use for.
_TCPDUMP_VALUE_OPTIONS = {"-i", "--interface", "-w", "-s", "-B", "-C", "-E", "-F", "-G", "-M", "-T", "-W", "-y", "-Z", "-j", "-z", "-r", "-V"}


@dataclass(kw_only=True)
class DutNetwork(Driver):
    """DUT network isolation with DHCP, DNS and NAT, by dutnet."""

    # jumpstarter 0.9.0's fields, with its defaults.
    interface: str
    subnet: str = "192.168.100.0/24"
    gateway_ip: str = "192.168.100.1"
    upstream_interface: str | None = None

    dhcp_enabled: bool = True
    dhcp_range_start: str = "192.168.100.100"
    dhcp_range_end: str = "192.168.100.200"
    addresses: list[dict[str, str]] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=lambda: ["8.8.8.8", "8.8.4.4"])

    dns_entries: list[dict[str, str]] = field(default_factory=list)

    local_ntp: bool = False

    enable_tcpdump: bool = False

    filter: FilterConfig | None = None

    state_dir: str | None = None
    nat_mode: Literal["masquerade", "1to1", "disabled", "none"] = "masquerade"
    public_interface: str | None = None

    # This driver's own: the dutnet binary (else $DUTNET_BINARY, else `dutnet` on PATH).
    dutnet_binary: str | None = None

    _binary: str = field(init=False, default="")
    _network: str = field(init=False, default="")
    _attached: bool = field(init=False, default=False)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_dut_network.client.DutNetworkClient"

    def __post_init__(self) -> None:
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if sys.platform != "linux":
            raise RuntimeError("the DutNetwork driver (dutnet) requires Linux")
        self._binary = daemon.find_binary(self.dutnet_binary)
        self._network = daemon.network_name(self.interface)
        daemon.attach(self._binary, self._network, self._dutnet_network())
        self._attached = True
        self.logger.info("DUT network up in dutnet: network=%s interface=%s", self._network, self.interface)

    def _dutnet_network(self) -> dict[str, Any]:
        """This driver's fields as a network of dutnet's config (it reads jumpstarter's keys)."""
        network: dict[str, Any] = {
            "interface": self.interface,
            "subnet": self.subnet,
            "gateway_ip": self.gateway_ip,
            "upstream_interface": self.upstream_interface,
            "dhcp_enabled": self.dhcp_enabled,
            "dhcp_range_start": self.dhcp_range_start,
            "dhcp_range_end": self.dhcp_range_end,
            "addresses": [self._resolved(entry) for entry in self.addresses],
            "dns_servers": list(self.dns_servers),
            "dns_entries": list(self.dns_entries),
            "local_ntp": self.local_ntp,
            "enable_tcpdump": self.enable_tcpdump,
            "filter": _filter_mapping(self.filter),
            "state_dir": self.state_dir,
            "nat_mode": self.nat_mode,
            "public_interface": self.public_interface,
        }
        return {key: value for key, value in network.items() if value is not None}

    @staticmethod
    def _resolved(entry: dict[str, str]) -> dict[str, str]:
        # jumpstarter takes a host name as `public_ip` and resolves it once.
        if entry.get("public_ip"):
            return {**entry, "public_ip": JumpstarterDutNetwork._resolve_ip(entry["public_ip"])}
        return dict(entry)

    def cleanup(self) -> None:
        """Takes this network out of dutnet; the last one stops dutnet, which restores the host."""
        if self._attached:
            self._attached = False
            self.logger.info("Cleaning up DUT network %s", self._network)
            daemon.detach(self._network)

    def close(self) -> None:
        self.cleanup()
        super().close()

    def _ask(self, verb: str, **fields: Any) -> dict[str, Any]:
        try:
            return daemon.request(verb, network=self._network, **fields)
        except DutnetError as exc:
            if exc.kind == "invalid":
                raise ValueError(str(exc)) from exc
            raise

    def _mine(self, verb: str) -> dict[str, Any]:
        """This network's entry of a reply that lists networks."""
        for network in self._ask(verb)["networks"]:
            if network.get("name", network.get("network")) == self._network:
                return network
        raise RuntimeError(f"dutnet's {verb} reply has no network {self._network!r}")

    @export
    def status(self) -> NetworkStatus:
        network = self._mine("status")
        interface = network["interface_status"]
        return NetworkStatus(
            interface_status=InterfaceStatus(
                name=self.interface,
                exists=bool(interface["exists"]),
                addresses=list(interface["addresses"]),
            ),
            interface=self.interface,
            upstream=network["upstream"] or self.upstream_interface,
            subnet=self.subnet,
            nat_mode=self.nat_mode,
            dhcp_enabled=self.dhcp_enabled,
            leases=[_lease(lease["mac"], lease["ip"], lease["hostname"], lease["expiry"]) for lease in network["leases"]],
            dns_entries=[_record(entry) for entry in network["dns_entries"]],
            nat_rules=self.get_nat_rules(),
        )

    @export
    def ntp_status(self) -> dict:
        """Return the status of the local NTP server."""
        network = self._mine("ntp-status")
        return {"enabled": bool(network["enabled"]), "running": bool(network["running"])}

    @export
    def get_dut_ip(self, mac: str) -> str | None:
        try:
            return str(self._ask("get-ip", mac=mac)["ip"])
        except ValueError:
            return None  # not a MAC: jumpstarter finds no lease for it either
        except DutnetError as exc:
            if exc.kind == "not_found":
                return None
            raise

    @export
    def get_leases(self) -> list[dict]:
        return [
            _lease(lease["mac"], lease["ip"], lease["hostname"] or "", lease["expires"])
            for lease in self._mine("leases")["leases"]
        ]

    @export
    def add_address(self, ip: str, mac: str | None = None, hostname: str = "", public_ip: str | None = None) -> None:
        if public_ip:
            public_ip = JumpstarterDutNetwork._resolve_ip(public_ip)
        # dutnet replaces an entry of the same IP, as jumpstarter does.
        reply = self._ask("add-address", ip=ip, mac=mac or None, hostname=hostname or None, public_ip=public_ip or None)
        self.logger.info("%s", reply["message"])

    @export
    def remove_address(self, ip: str) -> None:
        self._remove("remove-address", ip=ip)

    @export
    def get_nat_rules(self) -> str:
        # dutnet's own text of what NAT does (`dutnet nat-rules`).
        return _cli([self._binary, "nat-rules", "--network", self._network])

    @export
    def get_dns_entries(self) -> list[dict[str, str]]:
        return [_record(entry) for entry in self._mine("dns-entries")["entries"]]

    @export
    def add_dns_entry(self, hostname: str, ip: str) -> None:
        reply = self._ask("add-dns", hostname=hostname, ip=ip)
        self.logger.info("%s", reply["message"])

    @export
    def remove_dns_entry(self, hostname: str) -> None:
        self._remove("remove-dns", hostname=hostname)

    def _remove(self, verb: str, **fields: str) -> None:
        try:
            self.logger.info("%s", self._ask(verb, **fields)["message"])
        except DutnetError as exc:
            # jumpstarter removes nothing, silently, when there is nothing to remove.
            if exc.kind != "not_found":
                raise

    @export
    async def tcpdump(self, args: list[str] | None = None) -> AsyncGenerator[str, None]:
        """Stream one line per packet of the DUT interface (`dutnet capture`).

        Requires ``enable_tcpdump: true`` in the driver config. Of tcpdump's
        options, ``-c N`` is kept; the other words make the pcap-filter
        expression (tcpdump's other options are dropped: dutnet prints its own
        line per packet).
        """
        if not self.enable_tcpdump:
            raise RuntimeError("tcpdump is not enabled. Set 'enable_tcpdump: true' in the driver config.")
        options, expression = _capture_args(args or [])
        command = [self._binary, "capture", *options, self._network, *expression]
        self.logger.info("Starting capture: %s", " ".join(command))
        proc = await asyncio.subprocess.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                yield line.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            if proc.returncode is None:
                try:
                    proc.terminate()
                    await proc.wait()
                except ProcessLookupError:
                    pass


def _cli(command: list[str]) -> str:
    """Runs a dutnet CLI verb; its output, or an error with what it said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=daemon.REPLY_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def _lease(mac: str, ip: str, hostname: str, expiry: int) -> dict:
    """A lease as jumpstarter lists them (`DhcpLease`'s fields)."""
    return {"mac": mac, "ip": str(ip), "hostname": hostname, "expiry": int(expiry)}


def _record(entry: dict[str, Any]) -> dict[str, str]:
    return {"hostname": entry["hostname"], "ip": str(entry["ip"])}


def _filter_mapping(config: FilterConfig | dict | None) -> dict | None:
    """`filter` as dutnet's config takes it: jumpstarter's keys, absent ones left out."""
    if config is None:
        return None
    raw = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)

    def pruned(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: pruned(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [pruned(v) for v in value]
        return value

    mapping = pruned(raw)
    return mapping or None


def _capture_args(args: list[str]) -> tuple[list[str], list[str]]:
    """tcpdump's arguments as `dutnet capture` takes them: its options, the filter expression."""
    options: list[str] = []
    expression: list[str] = []
    words = iter(args)
    for arg in words:
        if arg == "-c":
            options += ["--count", next(words, "1")]
        elif arg.startswith("-c") and arg[2:].isdigit():
            options += ["--count", arg[2:]]
        elif arg in _TCPDUMP_VALUE_OPTIONS:
            next(words, None)
        elif not arg.startswith("-"):
            expression.append(arg)
    return options, expression
