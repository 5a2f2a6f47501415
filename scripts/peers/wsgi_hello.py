"""The WSGI hello app both gunicorn and `herd run` serve in scripts/reload-vs-gunicorn.sh."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"hello world"]
