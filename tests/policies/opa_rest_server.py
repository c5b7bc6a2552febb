"""An endpoint that speaks the part of OPA's REST API the gateway uses, evaluating with real OPA's
engine (``opa_bindings.OpaEngine``, the Go OPA compiled into a shared library).

    PUT    /v1/policies/{id}   text/plain Rego; every module is recompiled, 400 with OPA's error shape
    DELETE /v1/policies/{id}
    GET    /v1/policies        {"result": [{"id", "raw"}]}
    PUT    /v1/data/{path}     JSON document at data.{path}, 204
    DELETE /v1/data/{path}     204, 404 if absent
    POST   /v1/data/{path}     {"input": ...} -> {"result": ...}, or {} when undefined
    GET    /health             200

Knobs for fault injection: on decisions (POST /v1/data), ``delay_s`` before answering and
``reply`` (status, body bytes) to answer instead of evaluating; ``refuse`` makes every policy
and data change fail as a compile error would, ``refuse_marker`` only a module holding it. ``decisions`` lists the paths asked, so a test
can tell the server really decided.

Run as a script (``python tests/policies/opa_rest_server.py --port N``) it serves on that port
until SIGTERM or SIGINT: a sidecar process a test can stop and start again at the same address.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

_LOCATION = re.compile(r"^(?P<file>[^\s:]+):(?P<row>\d+): (?P<message>.+)$", re.MULTILINE)


class OpaRestServer:
    """Start with ``serve()`` (a context manager); ``url`` is where it listens."""

    def __init__(self, port: int = 0) -> None:
        """``port``: 0 for any free one; a stopped server's port to stand in for an OPA restarted
        empty on the same address."""
        self.modules: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.decisions: list[str] = []
        self.delay_s = 0.0
        self.reply: tuple[int, bytes] | None = None
        self.refuse = False
        self.refuse_marker = ""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._engine = OpaEngine()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @contextmanager
    def serve(self) -> Iterator[OpaRestServer]:
        thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="opa-rest", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join()

    def stop(self) -> None:
        """Stop answering: later requests find nobody listening."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._httpd.shutdown()
            self._httpd.server_close()
            self._engine.close()

    # --- what OPA does ----------------------------------------------------------------------

    def put_policy(self, policy_id: str, source: str) -> tuple[int, Any]:
        if self.refuse or (self.refuse_marker and self.refuse_marker in source):
            return _refused(policy_id)
        with self._lock:
            modules = {**self.modules, policy_id: source}
            error = self._activate(modules, self.data)
            if error is None:
                self.modules = modules
                return HTTPStatus.OK, {}
            return HTTPStatus.BAD_REQUEST, error

    def delete_policy(self, policy_id: str) -> tuple[int, Any]:
        if self.refuse:
            return _refused(policy_id)
        with self._lock:
            if policy_id not in self.modules:
                return HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": f"policy {policy_id}"}
            modules = {k: v for k, v in self.modules.items() if k != policy_id}
            error = self._activate(modules, self.data)
            if error is None:
                self.modules = modules
                return HTTPStatus.OK, {}
            return HTTPStatus.BAD_REQUEST, error

    def put_data(self, path: list[str], value: Any) -> tuple[int, Any]:
        if self.refuse:
            return _refused("/".join(path))
        with self._lock:
            data = json.loads(json.dumps(self.data))
            node = data
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
            self._activate(self.modules, data)
            self.data = data
            return HTTPStatus.NO_CONTENT, None

    def delete_data(self, path: list[str]) -> tuple[int, Any]:
        with self._lock:
            data = json.loads(json.dumps(self.data))
            node = data
            for part in path[:-1]:
                node = node.get(part, {})
            if path[-1] not in node:
                return HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": "document missing"}
            del node[path[-1]]
            self._activate(self.modules, data)
            self.data = data
            return HTTPStatus.NO_CONTENT, None

    def decide(self, path: list[str], input_doc: Any) -> tuple[int, Any]:
        self.decisions.append("/".join(path))
        if self.delay_s:
            self._stopping.wait(self.delay_s)
        if self.reply is not None:
            return self.reply
        with self._lock:
            engine = self._engine
        try:
            return HTTPStatus.OK, {"result": engine.eval_document(".".join(path), input_doc)}
        except OpaUndefinedError:
            return HTTPStatus.OK, {}
        except OpaError as exc:
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"code": "internal_error", "message": exc.message}

    def _activate(self, modules: dict[str, str], data: dict[str, Any]) -> dict[str, Any] | None:
        """Compile every module with the data into a fresh engine, as OPA does on each change;
        OPA's error document if that fails (the current engine then stays)."""
        engine = OpaEngine()
        try:
            for policy_id, source in modules.items():
                engine.add_policy(policy_id, source)
            engine.add_data(data)
            engine.eval_query("true")
        except OpaError as exc:
            engine.close()
            return _compile_error(exc)
        self._engine = engine  # the old one may still be deciding; it closes when collected
        return None


def _refused(name: str) -> tuple[int, Any]:
    return HTTPStatus.BAD_REQUEST, _compile_error(OpaError("refused", f"{name}:1: refused by the test"))


def _compile_error(exc: OpaError) -> dict[str, Any]:
    errors = [
        {
            "code": "rego_compile_error",
            "message": found["message"],
            "location": {"file": found["file"], "row": int(found["row"]), "col": 1},
        }
        for found in _LOCATION.finditer(exc.message)
    ]
    return {
        "code": "invalid_parameter",
        "message": "error(s) occurred while compiling module(s)",
        "errors": errors or [{"code": exc.code, "message": exc.message}],
    }


def _handler_for(server: OpaRestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            """Quiet: the tests look at what the gateway logs."""

        def do_GET(self) -> None:
            route = urlsplit(self.path).path
            if route == "/health":
                self._send(HTTPStatus.OK, {})
            elif route.rstrip("/") == "/v1/policies":
                with server._lock:
                    listing = [{"id": k, "raw": v} for k, v in server.modules.items()]
                self._send(HTTPStatus.OK, {"result": listing})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": route})

        def do_PUT(self) -> None:
            kind, rest = self._route()
            body = self._body()
            if kind == "policies":
                self._send(*server.put_policy(rest, body.decode()))
            elif kind == "data" and rest:
                self._send(*server.put_data(rest.split("/"), json.loads(body)))
            else:
                self._send(HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": self.path})

        def do_DELETE(self) -> None:
            kind, rest = self._route()
            if kind == "policies":
                self._send(*server.delete_policy(rest))
            elif kind == "data" and rest:
                self._send(*server.delete_data(rest.split("/")))
            else:
                self._send(HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": self.path})

        def do_POST(self) -> None:
            kind, rest = self._route()
            body = self._body()
            if kind != "data":
                self._send(HTTPStatus.NOT_FOUND, {"code": "resource_not_found", "message": self.path})
                return
            try:
                request = json.loads(body) if body else {}
            except json.JSONDecodeError:
                self._send(HTTPStatus.BAD_REQUEST, {"code": "invalid_parameter", "message": "body"})
                return
            self._send(*server.decide([p for p in rest.split("/") if p], request.get("input")))

        def _route(self) -> tuple[str, str]:
            parts = unquote(urlsplit(self.path).path).strip("/").split("/", 2)
            if len(parts) < 2 or parts[0] != "v1":
                return "", ""
            return parts[1], parts[2] if len(parts) > 2 else ""

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: Any) -> None:
            raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                if raw:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="An OPA-speaking endpoint on 127.0.0.1, until SIGTERM")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with OpaRestServer(port).serve():
        stop.wait()


if __name__ == "__main__":
    main()
