"""What `make run` tells an app developer about reaching the server."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.devserver import banner, lan_address, port_is_free

ROOT = Path(__file__).resolve().parent.parent


def test_on_loopback_it_says_how_to_open_it_up():
    text = banner("127.0.0.1", 5050, "192.168.1.23")
    assert "http://127.0.0.1:5050/api/v1" in text
    assert "HOST=0.0.0.0" in text
    assert "http://10.0.2.2:5050/api/v1" in text
    assert "192.168.1.23" not in text  # not reachable there: not offered
    assert "AirPlay" not in text


def test_on_all_interfaces_it_gives_the_lan_address():
    text = banner("0.0.0.0", 5050, "192.168.1.23")
    assert "http://192.168.1.23:5050/api/v1" in text
    assert "http://10.0.2.2:5050/api/v1" in text
    assert "no LAN address" in banner("0.0.0.0", 5050, None)


def test_port_5000_warns_of_airplay_and_a_taken_port_is_named():
    assert "PORT=5050" in banner("127.0.0.1", 5000, None)
    assert "taken" in banner("127.0.0.1", 5051, None, port_free=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert not port_is_free("127.0.0.1", busy.getsockname()[1])


def test_the_lan_address_is_not_loopback():
    address = lan_address()
    assert address is None or not address.startswith("127.")


@pytest.mark.slow
def test_make_run_prints_it_before_serving():
    makefile = (ROOT / "Makefile").read_text()
    assert "python -m app.devserver $(HOST) $(PORT)" in makefile
    out = subprocess.run(
        [sys.executable, "-m", "app.devserver", "0.0.0.0", "5050"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and "http://10.0.2.2:5050/api/v1" in out.stdout
