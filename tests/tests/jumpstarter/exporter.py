"""An exporter of one dutnet-backed DutNetwork, served with jumpstarter's `serve()`.

argv[1] is the driver instance as an exporter config writes it (`type:`,
`config:`). The driver is built by jumpstarter's own config code, then each
stdin line is a JSON command, answered by one JSON line on stdout:

- `{"call": METHOD, "args": [...]}`: `client.METHOD(*args)`; the result is
  checked against the return annotation of the same method of jumpstarter's
  own `DutNetwork` (and leases against its `DhcpLease`), and sent back. A
  method that changes nothing is also called on the driver itself, and that
  result checked strictly: jumpstarter's transport (protobuf `Value`) turns
  every number into a float, for its own driver too, so through the client
  an integral float passes for an `int`.
- `{"cli": [...]}`: `j dut-network ARGS` (the client's click group).
- `{"tcpdump": [...]}`: the lines of `client.tcpdump(args)` until it ends.

At the end of stdin the client and the driver are closed (dutnet stops).
"""

import dataclasses
import json
import sys
import types
import typing
from collections.abc import AsyncGenerator

from click.testing import CliRunner

from jumpstarter.common.utils import serve
from jumpstarter.config.exporter import ExporterConfigV1Alpha1DriverInstance
from jumpstarter_driver_dut_network.client import DutNetworkClient
from jumpstarter_driver_dut_network.dnsmasq import DhcpLease
from jumpstarter_driver_dut_network.driver import DutNetwork as JumpstarterDutNetwork


def say(**message: typing.Any) -> None:
    print(json.dumps(message), flush=True)


#: The methods that change nothing: called on the driver too.
READ_ONLY = {"status", "ntp_status", "get_dut_ip", "get_leases", "get_nat_rules", "get_dns_entries"}


def conforms(value: typing.Any, kind: typing.Any, where: str, strict: bool = True) -> None:
    """Asserts `value` is of jumpstarter's declared type `kind`, field by field."""
    if kind is typing.Any:
        return
    if kind is None or kind is type(None):
        assert value is None, f"{where}: {value!r} is not None"
        return
    if typing.is_typeddict(kind):
        hints = typing.get_type_hints(kind)
        assert isinstance(value, dict), f"{where}: {value!r} is not a {kind.__name__}"
        assert set(value) == set(hints), f"{where}: keys {sorted(value)}, jumpstarter's {sorted(hints)}"
        for key, hint in hints.items():
            conforms(value[key], hint, f"{where}.{key}", strict)
        return
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        problems = []
        for arg in args:
            try:
                conforms(value, arg, where, strict)
                return
            except AssertionError as exc:
                problems.append(str(exc))
        raise AssertionError(" / ".join(problems))
    if origin is typing.Literal:
        assert value in args, f"{where}: {value!r} is not one of {args}"
        return
    if origin is list:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            conforms(item, args[0] if args else typing.Any, f"{where}[{i}]", strict)
        return
    if origin is dict:
        assert isinstance(value, dict), f"{where}: {value!r} is not a mapping"
        for key, item in value.items():
            conforms(key, args[0] if args else typing.Any, f"{where} key", strict)
            conforms(item, args[1] if args else typing.Any, f"{where}.{key}", strict)
        return
    if kind is int and not strict and isinstance(value, float) and value.is_integer():
        return
    # bool is an int in Python, not in JSON: keep them apart.
    assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), (
        f"{where}: {value!r} is not {kind}"
    )


def lease_conforms(lease: dict, where: str, strict: bool) -> None:
    """A lease has exactly jumpstarter's `DhcpLease` fields, of their types."""
    fields = {f.name: f.type for f in dataclasses.fields(DhcpLease)}
    assert set(lease) == set(fields), f"{where}: keys {sorted(lease)}, DhcpLease's {sorted(fields)}"
    hints = typing.get_type_hints(DhcpLease)
    for name in fields:
        conforms(lease[name], hints[name], f"{where}.{name}", strict)


def checked(method: str, result: typing.Any, strict: bool) -> typing.Any:
    declared = typing.get_type_hints(getattr(JumpstarterDutNetwork, method)).get("return", typing.Any)
    if typing.get_origin(declared) is AsyncGenerator:
        declared = list[typing.get_args(declared)[0]]
    conforms(result, declared, method, strict)
    leases = result["leases"] if method == "status" else result if method == "get_leases" else []
    for i, lease in enumerate(leases):
        lease_conforms(lease, f"{method} lease {i}", strict)
    return result


def main() -> None:
    driver = ExporterConfigV1Alpha1DriverInstance.from_str(sys.argv[1]).instantiate()
    try:
        with serve(driver) as client:
            assert type(client) is DutNetworkClient, f"the client is {type(client)}"
            say(ready=True)
            for line in sys.stdin:
                command = json.loads(line)
                try:
                    if "call" in command:
                        method, args = command["call"], command.get("args", [])
                        if method in READ_ONLY:
                            checked(method, getattr(driver, method)(*args), strict=True)
                        say(ok=checked(method, getattr(client, method)(*args), strict=False))
                    elif "cli" in command:
                        run = CliRunner().invoke(client.cli(), command["cli"])
                        say(ok={"exit_code": run.exit_code, "output": run.output})
                    elif "tcpdump" in command:
                        lines = list(client.tcpdump(command["tcpdump"]))
                        say(ok=checked("tcpdump", lines, strict=False))
                except AssertionError as exc:
                    say(shape=str(exc))
                except Exception as exc:  # the driver's error, for the test to judge
                    say(error=f"{type(exc).__name__}: {exc}")
    finally:
        driver.close()
    say(closed=True)


if __name__ == "__main__":
    main()
