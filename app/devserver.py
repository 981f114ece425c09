"""What `make run` prints before it serves: where the API listens and how a
phone, an emulator or a simulator reaches it (``python -m app.devserver HOST PORT``)."""

from __future__ import annotations

import socket
import sys

API = "/api/v1"
ANDROID_EMULATOR_HOST = "10.0.2.2"  # the emulator's name for the machine it runs on
MACOS_AIRPLAY_PORT = 5000  # AirPlay Receiver listens here on macOS 12 and later
ALL_INTERFACES = {"0.0.0.0", "::", ""}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def lan_address() -> str | None:
    """This machine's address on its local network (the interface of its default
    route), or None without one. Nothing is sent: a UDP connect only picks the route."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like the internet, never reached
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0" if host in ALL_INTERFACES else host, port))
        except OSError:
            return False
    return True


def banner(host: str, port: int, lan: str | None, *, port_free: bool = True) -> str:
    local = f"http://127.0.0.1:{port}"
    lines = [f"API: {local}{API}   docs: {local}{API}/docs   (HOST={host} PORT={port})"]
    if host in ALL_INTERFACES:
        if lan:
            lines.append(f"  phone on the same Wi-Fi: http://{lan}:{port}{API}  (let the firewall allow port {port})")
        else:
            lines.append("  phone on the same Wi-Fi: this machine has no LAN address right now")
    elif host in LOOPBACK:
        lines.append(f"  phone on the same Wi-Fi: not reachable on {host}; run `make run HOST=0.0.0.0`")
    else:
        lines.append(f"  phone on the same network: http://{host}:{port}{API}")
    if host in LOOPBACK or host in ALL_INTERFACES:
        lines.append(f"  Android emulator: http://{ANDROID_EMULATOR_HOST}:{port}{API}")
        lines.append(f"  iOS simulator: {local}{API}")
    if not port_free:
        lines.append(f"  port {port} is taken by another program: run `make run PORT=5050`")
    lines.append(
        "  SMS codes (SMS_BACKEND=log) are not sent: each is written to this terminal as "
        "`sms code 123456 for 139****0001 (register)`; demo accounts sign in with password demo-pass-2026"
    )
    if port == MACOS_AIRPLAY_PORT:
        lines.append(
            "  macOS: AirPlay Receiver holds port 5000 (its 403 answers are not ours): "
            "`make run PORT=5050`, or turn it off in System Settings > General > AirDrop & Handoff"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 5000
    print(banner(host, port, lan_address(), port_free=port_is_free(host, port)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
