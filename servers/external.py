"""Real servers socklab did not write, started on a port with a throwaway configuration: nginx and Redis.

    python -m servers.external nginx --port P [--workers 4] [--accept-mutex on|off] [--reuseport] [--listen-backlog N]
    python -m servers.external redis --port P

socklab runs them as any other server of the user's (``--server-cmd 'nginx=python -m servers.external nginx
--port {port}'``): it waits until the port accepts, the monitor watches this process's tree (the launcher,
then nginx's master and workers, or redis-server), the kernel tracer sees which worker accepted each
connection, and the run's stop signals the group.  The configuration and data go to a temporary folder that
is removed when the server exits; nothing is written to /etc, /var or a system port, and neither program is
left behind (each runs in the foreground, the child of a shell that this launcher becomes: ``SUPERVISE``).

nginx answers ``GET /`` with a short 200 (``return 200``: no file read), logs nothing, and keeps
connections alive for 10,000 requests (``--keepalive-requests``), then says ``Connection: close``.
``--accept-mutex`` and ``--reuseport`` are the three ways nginx spreads connections over its
workers that Cloudflare's 2017 write-up compared (the lab's ``nginx-accept``): a shared listener each
worker watches (mutex off, with EPOLLEXCLUSIVE where the kernel has it), a shared listener only the mutex
holder watches (on), or a listener of each worker's own (reuseport).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 4096;
    accept_mutex {accept_mutex};
}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests {keepalive};
    server {{
        listen {host}:{port} backlog={backlog}{reuseport};
        location / {{
            default_type text/plain;
            return 200 "socklab\\n";
        }}
    }}
}}
"""


def find_program(name: str) -> str | None:
    """The program's path: on PATH or in /usr/sbin (where Debian puts nginx); None when it is not installed."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def program(name: str) -> str:
    """The program's path; SystemExit(2) says how to get it."""
    found = find_program(name)
    if not found:
        sys.stderr.write(f"servers.external: {name} is not installed; bash .ci/setup --test installs it\n")
        raise SystemExit(2)
    return found


def nginx_command(args: argparse.Namespace, root: Path) -> list[str]:
    conf = root / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            workers=args.workers,
            root=root,
            accept_mutex=args.accept_mutex,
            host=args.host,
            port=args.port,
            backlog=args.listen_backlog,
            reuseport=" reuseport" if args.reuseport else "",
            keepalive=args.keepalive_requests,
        )
    )
    return [program("nginx"), "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]


def redis_command(args: argparse.Namespace, root: Path) -> list[str]:
    return [
        program("redis-server"),
        "--port",
        str(args.port),
        "--bind",
        args.host,
        "--dir",
        str(root),
        "--save",
        "",
        "--appendonly",
        "no",
        "--tcp-backlog",
        str(args.listen_backlog),
        "--daemonize",
        "no",
        "--logfile",
        "",
        "--loglevel",
        "warning",
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m servers.external", description="Run nginx or Redis on a port.")
    p.add_argument("server", choices=("nginx", "redis"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--listen-backlog", type=int, default=511, help="listen() backlog (both programs' default: 511)")
    p.add_argument("--workers", type=int, default=1, help="nginx: worker processes")
    p.add_argument("--accept-mutex", choices=("on", "off"), default="off", help="nginx: accept_mutex")
    p.add_argument("--reuseport", action="store_true", help="nginx: a SO_REUSEPORT listener for each worker")
    p.add_argument(
        "--keepalive-requests", type=int, default=10000, help="nginx: requests on a connection before it closes it"
    )
    return p


# What stays as the server's parent once the configuration is written: a shell, not this Python process (about
# 1 MB against 10, no CPU), so the monitor's figures for the server's process tree are the server's. It passes a
# stop on to the server, waits for it, removes the temporary folder, and exits with the server's status.
SUPERVISE = """
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done
[ "$status" -ne 0 ] && [ -f "$ROOT/error.log" ] && tail -c 2000 "$ROOT/error.log" >&2
rm -rf "$ROOT"
[ "$status" -eq 143 ] && status=0
exit "$status"
"""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix=f"socklab-{args.server}-"))
    try:
        command = (nginx_command if args.server == "nginx" else redis_command)(args, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    sys.stdout.flush()
    os.execvpe("sh", ["sh", "-c", SUPERVISE, "servers.external", *command], {**os.environ, "ROOT": str(root)})


if __name__ == "__main__":
    sys.exit(main())
