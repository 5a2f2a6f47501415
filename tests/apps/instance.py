"""An instance for `herd proxy --spawn`: an HTTP/1.1 server on $PORT, answering
`instance <HERD_INSTANCE> pid <pid>`. SIGTERM, as a well-behaved server takes it: stop
accepting, finish the requests in hand (their responses say Connection: close), exit 0.
"""
import http.server
import os
import signal
import threading
import time

port = int(os.environ["PORT"])
name = f"instance {os.environ.get('HERD_INSTANCE')} pid {os.getpid()}".encode()
lock = threading.Lock()
active = 0
stopping = False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global active
        with lock:
            active += 1
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(name)))
            if stopping:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(name)
        finally:
            with lock:
                active -= 1

    def log_message(self, *args):
        pass


def stop():
    global stopping
    stopping = True
    server.shutdown()
    while True:
        with lock:
            if active == 0:
                os._exit(0)
        time.sleep(0.01)


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop).start())
print(f"instance on {port}", flush=True)
server.serve_forever()
while True:
    time.sleep(1)  # stop() ends the process
