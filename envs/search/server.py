"""A retrieval server speaking the Search-R1 ``/retrieve`` JSON API (stdlib ``http.server``).

    python -m agentsd.envs.search.server --corpus passages.jsonl [--retriever bm25|dense] [--port 8000]
    python -m agentsd.envs.search.server --corpus synthetic [--world-seed 0] [--world-scale 1.0]

``POST /retrieve`` with ``{"queries": [...], "topk": k, "return_scores": true}`` answers
``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` (one list per query; with
``return_scores`` false, the documents alone). ``GET /health`` answers ``{"status": "ok", "passages": n}``.
``--corpus synthetic`` serves the env's default synthetic world, so ``make("search", retriever="http")``
sees the same passage ids as the in-process default. Clients: :class:`~agentsd.envs.search.retrieval.
HTTPRetriever`, or the env with ``retriever="http", url=...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentsd.envs.search.corpus import load_passages
from agentsd.envs.search.retrieval import make_retriever

log = logging.getLogger("agentsd.search.server")
MAX_QUERIES = 1024
MAX_TOPK = 1000
MAX_BODY = 16 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server_version = "agentsd-retriever/1"
    retriever: Any = None
    n_passages = 0
    lock = threading.Lock()

    def log_message(self, fmt: str, *args: Any) -> None:  # route to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, code: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/") in ("/health", ""):
            self._send(200, {"status": "ok", "passages": self.n_passages})
        else:
            self._send(404, {"error": f"no such path {self.path!r}; POST /retrieve"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/retrieve":
            self._send(404, {"error": f"no such path {self.path!r}; POST /retrieve"})
            return
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0 or n > MAX_BODY:
            self._send(400, {"error": "a JSON body is required (at most 16 MiB)"})
            return
        try:
            req = json.loads(self.rfile.read(n))
            queries = req["queries"]
            topk = int(req.get("topk", 3))
            scores = bool(req.get("return_scores", False))
            if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                raise ValueError("'queries' must be a list of strings")
            if len(queries) > MAX_QUERIES or not 1 <= topk <= MAX_TOPK:
                raise ValueError(f"at most {MAX_QUERIES} queries and 1 <= topk <= {MAX_TOPK}")
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": f"bad request: {e}"})
            return
        with self.lock:  # bm25s / embedders are not guaranteed thread-safe
            hits = self.retriever.batch_search(queries, topk)
        result = [
            [{"document": p.to_json(), "score": s} if scores else p.to_json() for p, s in per_query]
            for per_query in hits
        ]
        self._send(200, {"result": result})


def make_server(retriever: Any, host: str = "127.0.0.1", port: int = 8000, n_passages: int = 0) -> ThreadingHTTPServer:
    """A server (not yet serving) for ``retriever``; ``port=0`` picks a free port (``server.server_port``)."""
    handler = type("Handler", (_Handler,), {"retriever": retriever, "n_passages": n_passages,
                                            "lock": threading.Lock()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(retriever: Any, host: str = "127.0.0.1", port: int = 0,
                    n_passages: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server on a background thread; returns it (``shutdown()`` stops it) and its /retrieve URL."""
    server = make_server(retriever, host, port, n_passages)
    threading.Thread(target=server.serve_forever, daemon=True, name="agentsd-retriever").start()
    return server, f"http://{host}:{server.server_port}/retrieve"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve a passage corpus over the Search-R1 /retrieve API.")
    ap.add_argument("--corpus", required=True, help="passages JSONL, or 'synthetic' for the default world")
    ap.add_argument("--retriever", default="bm25", choices=("bm25", "dense"))
    ap.add_argument("--model", default=None, help="dense: a sentence-transformers model directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--world-scale", type=float, default=1.0)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # quiet libraries, not our lines
    log.setLevel(logging.INFO)
    if a.corpus == "synthetic":
        from agentsd.envs.search.world import default_world

        passages = default_world(a.world_seed, a.world_scale).passages
    else:
        passages = load_passages(a.corpus)
    kwargs = {"model": a.model} if a.retriever == "dense" and a.model else {}
    retriever = make_retriever(a.retriever, passages, **kwargs)
    server = make_server(retriever, a.host, a.port, len(passages))
    log.info("serving %d passages (%s) on http://%s:%d/retrieve", len(passages), a.retriever, a.host,
             server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # pragma: no cover - interactive stop
        pass
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
