#!/usr/bin/env python3
"""A target for scripts/proxy-large-bodies.sh: streams large bodies without holding them.

  POST/PUT any path       reads the body (Content-Length or chunked), answers its length
  GET /download/length/N  N bytes with Content-Length
  GET /download/chunked/N N bytes chunked (1 MiB chunks)

Usage: bulk-backend.py PORT   (one thread per connection, keep-alive)
"""
import socket
import sys
import threading

BLOCK = bytes(range(256)) * 4096  # 1 MiB


def read_head(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            return lines
        lines.append(line.decode("latin1"))


def header(lines, name):
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def drain_body(f, lines):
    n = 0
    if (header(lines, "transfer-encoding") or "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline().strip():
                    pass
                return n
            left = size
            while left:
                got = len(f.read(min(left, 1 << 20)))
                if not got:
                    raise EOFError
                left -= got
            n += size
            f.read(2)
    left = int(header(lines, "content-length") or 0)
    while left:
        got = len(f.read(min(left, 1 << 20)))
        if not got:
            raise EOFError
        left -= got
        n += got
    return n


def serve(conn):
    f = conn.makefile("rb")
    try:
        while True:
            lines = read_head(f)
            if lines is None:
                return
            method, path, _ = lines[0].split(" ", 2)
            n = drain_body(f, lines)
            if method == "GET" and path.startswith("/download/"):
                _, _, kind, size = path.split("/")
                size = int(size)
                chunked = kind == "chunked"
                framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
                conn.sendall(f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode())
                left = size
                while left:
                    piece = BLOCK[: min(left, len(BLOCK))]
                    if chunked:
                        conn.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    else:
                        conn.sendall(piece)
                    left -= len(piece)
                if chunked:
                    conn.sendall(b"0\r\n\r\n")
            else:
                body = str(n).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except (OSError, EOFError, ValueError):
        pass
    finally:
        conn.close()


def main():
    srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
