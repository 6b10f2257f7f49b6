"""A local stand-in for the Facebook Graph API, shared by scripts/check-openapi and
scripts/check-image: plain HTTP, or HTTPS with a certificate of the caller's private CA."""

import http.server
import json
import ssl
import threading


class GraphStub(http.server.BaseHTTPRequestHandler):
    """Answers every Graph and Viber API call the operator makes with one body that fits them
    all: a token exchange (access_token), a page or WhatsApp number read (id, name,
    access_token), a subscription or its removal (success), the managed pages (`data`, the
    server's `pages`) and Viber's account read and webhook calls (status 0, id, name). Facebook,
    Instagram, WhatsApp and Viber connects, disconnects and explore then succeed. Each request's method and path (no query: it carries tokens) is
    appended to the server's `calls`."""

    def _answer(self):
        self.server.calls.append((self.command, self.path.split("?", 1)[0]))
        body = json.dumps(
            {"access_token": "stub-token", "id": "1", "name": "Stub page", "success": True,
             "data": self.server.pages, "status": 0, "status_message": "ok"}
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):  # quiet: the query strings carry (stub) tokens
        pass


def start_graph_stub(cert=None, key=None, pages=()):
    """Serves on 127.0.0.1 (an OS-chosen port) until `.shutdown()`; over TLS with `cert` (PEM,
    chain of the server certificate) and `key` when given."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GraphStub)
    server.calls = []
    server.pages = list(pages)
    if cert is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
