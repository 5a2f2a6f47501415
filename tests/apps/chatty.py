"""Prints LINES lines (default 2000) on stdout and as many on stderr, as fast as it can,
each naming its worker and its number, then idles until SIGTERM: a test checks that every
line reaches herd's output whole and prefixed. Socket-activated like activated.py (it only
notifies; it serves nothing)."""
import os
import signal
import socket
import sys

lines = int(os.environ.get("LINES", "2000"))
worker = os.environ.get("LISTEN_PID")
for i in range(lines):
    print(f"out {worker} {i} " + "x" * (i % 300), flush=False)
    print(f"err {worker} {i} " + "y" * (i % 300), file=sys.stderr, flush=False)
sys.stdout.flush()
sys.stderr.flush()
path = os.environ["NOTIFY_SOCKET"]
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"READY=1", "\0" + path[1:] if path.startswith("@") else path)
signal.sigwait([signal.SIGTERM])
