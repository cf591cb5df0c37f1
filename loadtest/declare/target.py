"""A server's address as socklab writes it (``tcp://HOST:PORT``, ``tcp://[::1]:PORT`` for IPv6), and a
--server-cmd's ``NAME=COMMAND``."""

from __future__ import annotations


def parse_target(host: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (``[::1]`` for IPv6) → (host, port); ValueError says what is wrong."""
    scheme, sep, rest = host.partition("://")
    if not sep or scheme != "tcp":
        raise ValueError(f"--host {host!r}: use tcp://HOST:PORT, e.g. tcp://127.0.0.1:6666")
    if rest.startswith("["):
        addr, bracket, port_text = rest[1:].partition("]")
        port_text = port_text[1:] if port_text.startswith(":") else ""
        if not bracket:
            raise ValueError(f"--host {host!r}: unclosed '[' in the address")
    else:
        addr, _, port_text = rest.rpartition(":")
        if not addr:
            addr, port_text = rest, ""
    if not addr or not port_text.isdigit():
        raise ValueError(f"--host {host!r}: give the port too, e.g. tcp://{addr or '127.0.0.1'}:6666")
    if not 0 < int(port_text) < 65536:
        raise ValueError(f"--host {host!r}: port {int(port_text)} out of range 1–65535")
    return addr, int(port_text)


LOCAL_HOSTS = ("localhost", "::1", "0.0.0.0", "::")


def local_port(host: str) -> tuple[int | None, str]:
    """``tcp://HOST:PORT`` → PORT when HOST is this machine (its kernel can be traced), else None and why."""
    try:
        addr, port = parse_target(host)
    except ValueError:
        return None, "no server address"
    if addr not in LOCAL_HOSTS and not addr.startswith("127."):
        return None, f"the server is on another host ({addr}): its kernel is not this one"
    return port, ""


def format_target(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def split_named_command(text: str) -> tuple[str, str]:
    """'NAME=COMMAND …' → (NAME, COMMAND); a command without a leading NAME= is named 'cmd'."""
    head, sep, rest = text.partition("=")
    if sep and head and " " not in head and head.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return head, rest.strip()
    return "cmd", text.strip()
