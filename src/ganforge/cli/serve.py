"""``ganforge serve``: the local web app (:mod:`ganforge.web`) over a folder of runs.

ganforge serve [--runs-dir runs] [--port 7860] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ganforge.cli._common import add_device, add_threads, check_device, use_threads

ORDER = 90  # place in `ganforge --help`
HELP = "a local web app: runs, samples, clips, completion, upscaling, translation, watermarks"
DESCRIPTION = (
    "Serve a web app on this machine: the runs of a folder (samples, loss curves, metrics, live while "
    "training) and pages that generate, complete, upscale, translate and watermark images with them. It "
    "reads the run folders and never writes into them. Needs the web extra: pip install 'ganforge[web]'."
)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default="runs", metavar="DIR", help="the folder of run folders (default: runs)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; anything else lets other "
        "machines in, with no password)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=20, metavar="MB", help="largest uploaded file (default 20)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="largest image, width x height, uploaded or read (default: $GANFORGE_MAX_PIXELS when set, else "
        "16000000: the limit the command line applies too)",
    )
    add_device(parser)
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    from ganforge.errors import UsageError

    runs_dir = Path(args.runs_dir).expanduser()
    if not runs_dir.is_dir():
        raise UsageError(
            f"--runs-dir '{runs_dir}' is not a folder; train a model first ('ganforge train' writes "
            "runs/) or pass the folder that holds your runs"
        )
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1..65535")
    if args.max_upload_mb <= 0 or (args.max_pixels is not None and args.max_pixels <= 0):
        raise UsageError("--max-upload-mb and --max-pixels must be positive")
    check_can_listen(args.host, args.port)  # before anything is printed: a busy port or unknown host is one line
    try:
        from ganforge.web.server import serve
    except ImportError as e:
        raise UsageError(
            f"the web app needs the web extra ({e.name} is missing): pip install 'ganforge[web]'"
        ) from None
    device = check_device(args.device)
    use_threads(args.threads)
    from ganforge import imaging

    if args.max_pixels is not None:  # one policy: what the upload check allows, load_image reads
        os.environ[imaging.MAX_PIXELS_ENV] = str(args.max_pixels)
    max_pixels = imaging.max_pixels()
    if args.host not in LOCAL_HOSTS:
        print(
            f"warning: listening on {args.host}: other machines can reach this app and use its models and "
            "run folders, with no password; use the default --host 127.0.0.1 unless you mean it",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"ganforge web app for {runs_dir.resolve()} at http://{host}:{args.port}  (Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    serve(
        runs_dir, host=args.host, port=args.port, device=device, max_upload_mb=args.max_upload_mb, max_pixels=max_pixels
    )
    return 0


def check_can_listen(host: str, port: int) -> None:
    """Make sure the app can listen on ``host:port`` (the address resolves, is this machine's, and the
    port is free and allowed), by binding a socket as uvicorn will and closing it at once; else a
    one-line :class:`UsageError`. Done before the "web app at ..." line is printed."""
    import errno
    import socket

    from ganforge.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses it
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        why = e.strerror if isinstance(e, socket.gaierror) and e.strerror else str(e)
        raise UsageError(f"--host {host!r}: cannot resolve it to an address of this machine ({why})") from None
    family, kind, proto, _, addr = infos[0]
    try:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closed app's port is free
            s.bind(addr)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            why = "the port is already in use (another program, or another 'ganforge serve'); choose another --port"
        elif e.errno == errno.EADDRNOTAVAIL:
            why = f"{host!r} is not an address of this machine; use 127.0.0.1 (this machine only) or 0.0.0.0 (all)"
        elif e.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need administrator rights); choose a port above 1024"
        else:
            why = e.strerror or str(e)
        raise UsageError(f"cannot listen on {host}:{port}: {why}") from None
