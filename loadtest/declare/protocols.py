"""The protocols socklab's users speak (``--protocol``), declared once: their names, their options, and the
one-line answer to a combination a protocol cannot express.

The users are the same for every protocol; what changes is the bytes of a request and where its reply
ends (loadtest.client.protocols, one class each):

- ``socklab``: socklab's own frames (the default; servers.protocol): ECHO, SLEEP, WORK, sizes, mixes;
- ``raw``: any bytes (``--message``); a reply is ``--expect-bytes N``, or up to ``--expect-delimiter``, or
  everything until the server closes (tcpkali's and k6's TCP model);
- ``http``: HTTP/1.1 ``GET --http-path``, kept alive on a persistent user, ``Connection: close`` on a
  connect-per-request one; a status of 400 or more is a failure;
- ``resp``: Redis's protocol, ``PING`` or ``--resp-command``.

The one-shot user (the seed's client) needs no protocol: it sends ``--message`` (or ``--payload-bytes``)
and waits for the server's close.  No locust, no gevent.
"""

from __future__ import annotations

import re
from typing import Any

from loadtest.declare.option import Option

SOCKLAB, RAW, HTTP, RESP = "socklab", "raw", "http", "resp"
PROTOCOLS: tuple[str, ...] = (SOCKLAB, RAW, HTTP, RESP)

PROTOCOL_OPTIONS: tuple[Option, ...] = (
    Option(
        "protocol",
        str,
        SOCKLAB,
        "what the users speak: socklab (its own frames), raw (--message bytes), http (GET --http-path), "
        "resp (Redis: PING or --resp-command); the users, the accounting and the kernel's timeline are the same",
        choices=PROTOCOLS,
        overridable=True,
    ),
    Option(
        "message",
        str,
        "",
        "raw, and the one-shot user: the bytes each request sends, with escapes ('PING\\r\\n', '\\x00\\x01'); "
        "empty = --payload-bytes bytes of 'x'",
        overridable=True,
    ),
    Option(
        "expect-bytes",
        int,
        0,
        "raw: a reply is this many bytes; 0 = see --expect-delimiter",
        overridable=True,
        minimum=0,
    ),
    Option(
        "expect-delimiter",
        str,
        "",
        "raw: a reply ends with these bytes (escapes allowed, '\\n'); with neither, a reply is everything until the "
        "server closes (one per connection: a connect-per-request or one-shot user)",
        overridable=True,
    ),
    Option("http-path", str, "/", "http: the path each GET asks for", overridable=True),
    Option(
        "resp-command",
        str,
        "PING",
        "resp: the command each request sends, split like a shell line ('SET key value', 'GET key'); an error "
        "reply is a failure",
        overridable=True,
    ),
)


def decode_escapes(text: str) -> bytes:
    """'PING\\r\\n' → b'PING\\r\\n': a message written on a command line, with backslash escapes."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")


def protocol_problem(options: Any) -> str | None:
    """What the protocol cannot do with these options, as one line; None if it can."""
    protocol = getattr(options, "protocol", SOCKLAB)
    named = getattr(options, "user_classes", None) or []  # user classes named on the command line win over the mode
    modes = {re.sub(r"(?<!^)(?=[A-Z])", "-", str(n).removesuffix("User")).lower() for n in named}
    for mode in sorted(modes or {getattr(options, "user_mode", "")}):
        problem = _mode_problem(options, protocol, mode)
        if problem:
            return problem
    return None


def _mode_problem(options: Any, protocol: str, mode: str) -> str | None:
    """What this protocol cannot do for a user of this mode, with these options."""
    for name in ("message", "expect_delimiter"):
        try:
            decode_escapes(getattr(options, name, "") or "")
        except (UnicodeDecodeError, UnicodeEncodeError) as exc:
            return f"--{name.replace('_', '-')}: {exc.reason}; write bytes as text with escapes such as \\x00 or \\n"
    if mode == "one-shot":
        if protocol not in (SOCKLAB, RAW):
            return (
                f"the one-shot user sends --message and waits for the server's close; --protocol {protocol} has "
                "requests and replies of its own: use --user-mode connect-per-request"
            )
        return None
    if protocol == SOCKLAB:
        return None
    if str(getattr(options, "op", "ECHO")).upper() != "ECHO":
        what = {RAW: "--message", HTTP: "GET --http-path", RESP: "--resp-command"}[protocol]
        return f"--op {options.op} is an op of socklab's frames; --protocol {protocol} sends {what}: drop --op"
    if getattr(options, "mix", ""):
        return f"--mix mixes socklab's ops; --protocol {protocol} sends one request: drop --mix"
    if getattr(options, "reply_bytes", 0):
        return f"--reply-bytes asks a socklab server for a reply size; --protocol {protocol} cannot: drop it"
    if protocol == RAW and not options.expect_bytes and not options.expect_delimiter:
        if mode in ("persistent", "idle"):
            return (
                "--protocol raw with neither --expect-bytes nor --expect-delimiter: a reply ends only when the "
                f"server closes, one per connection, so a {mode} user cannot wait for the next; give one, or use "
                "--user-mode connect-per-request"
            )
        if getattr(options, "pipeline", 1) > 1:
            return "--pipeline with replies ended by the server's close: give --expect-bytes or --expect-delimiter"
    if not (getattr(options, "http_path", "/") or "/").startswith("/"):
        return f"--http-path {options.http_path!r} must start with '/'"
    if protocol == RESP and not (getattr(options, "resp_command", "") or "").split():
        return "--resp-command is empty; give a command such as PING or 'GET key'"
    return None


def request_label(options: dict[str, Any], user_classes: list[str] | tuple[str, ...] = ()) -> str:
    """What a run's requests were, in a word or two, from run.json's options: the socklab op ('ECHO'), or the
    other protocol's request ('GET /', 'RESP SET k v', 'RAW'), or the one-shot user's 'MESSAGE'."""
    if "OneShotUser" in user_classes or (options.get("user_mode") == "one-shot" and not user_classes):
        return "MESSAGE"
    protocol = options.get("protocol") or SOCKLAB
    if protocol == HTTP:
        return f"GET {options.get('http_path') or '/'}"
    if protocol == RESP:
        return f"RESP {options.get('resp_command') or 'PING'}"
    if protocol == RAW:
        return "RAW"
    return str(options.get("op", ""))
