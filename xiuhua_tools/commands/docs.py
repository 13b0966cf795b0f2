"""`xiuhua docs [--serve]`: write the AsyncAPI document and the JSON Schemas of every message, freeze new
schema versions under contracts/published/, and optionally serve them all as browsable HTML beside the
project's documentation pages (`xiuhua_tools.docs_site`)."""

from __future__ import annotations

import argparse
import html
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xiuhua_tools.commands import emit


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("docs", help="generate (and serve) the AsyncAPI and JSON Schema documents of the contracts")
    p.add_argument("--serve", action="store_true", help="serve the documents and docs/ as HTML until Ctrl-C")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="port for --serve (default: a free one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_docs)


def generate() -> dict[str, list[str]]:
    """Write every document; returns the paths written, by kind."""
    from contracts import asyncapi, export

    return {
        "schemas": [str(p) for p in export.write()],
        "asyncapi": [str(p) for p in asyncapi.write()],
        "published": [str(p) for p in asyncapi.freeze_new_versions()],
    }


def _docs(args: argparse.Namespace) -> int:
    written = generate()
    frozen = written["published"]
    emit(
        args,
        f"wrote {len(written['schemas'])} schema documents to contracts/schemas/, "
        f"contracts/asyncapi.json and .yaml; froze {len(frozen)} new schema version(s) under contracts/published/"
        + "".join(f"\n  {p}" for p in frozen),
        written,
    )
    if args.serve:
        server = make_server(args.host, args.port)
        host, port = _address(server)
        print(
            f"serving the contract documents on http://{host}:{port}/ and the documentation on "
            f"http://{host}:{port}/docs/ (Ctrl-C stops)",
            flush=True,
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return 0


# ---- HTML -----------------------------------------------------------------------------------------------


def _pre(value: Any) -> str:
    return f"<pre>{html.escape(json.dumps(value, ensure_ascii=False, indent=2))}</pre>"


_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;display:flex}
nav{width:22rem;height:100vh;overflow:auto;position:sticky;top:0;background:#f6f6f4;padding:1rem;box-sizing:border-box}
nav a{display:block;font-family:monospace;font-size:.85rem;text-decoration:none;color:#234;padding:.1rem 0}
main{padding:1rem 2rem;max-width:70rem}
section{border-top:1px solid #ddd;padding:.5rem 0 1rem}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#fafafa;border:1px solid #eee;padding:.5rem;overflow:auto;max-height:30rem}
.send{color:#2a6} .receive{color:#a62} details{margin:.3rem 0}
"""


def render_html(doc: dict[str, Any]) -> str:
    """One self-contained page: every channel with its operation, message, schema and example."""
    info = doc["info"]
    ops_by_channel: dict[str, str] = {}
    for op in doc["operations"].values():
        ops_by_channel[op["channel"]["$ref"].rsplit("/", 1)[-1]] = op["action"]
        if "reply" in op:  # a request's reply channel: Xiuhua sends the answer
            ops_by_channel[op["reply"]["channel"]["$ref"].rsplit("/", 1)[-1]] = "send"
    nav, body = [], []
    for cid, channel in doc["channels"].items():
        action = ops_by_channel.get(cid, "")
        # A reply channel has no address: the requester's inbox.
        address = channel["address"] or f"{channel['title']} (reply inbox)"
        nav.append(f'<a href="#{cid}" class="{action}">{html.escape(address)}</a>')
        parts = [
            f'<section id="{cid}"><h2><code>{html.escape(address)}</code></h2>',
            f'<p class="{action}">Xiuhua <b>{"receives" if action == "receive" else "sends"}</b> this. '
            f"{html.escape(channel.get('description', ''))}</p>",
        ]
        for pname, param in channel.get("parameters", {}).items():
            parts.append(f"<p>Parameter <code>{{{html.escape(pname)}}}</code>: {html.escape(param['description'])}</p>")
        for ref in channel["messages"].values():
            message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
            parts.append(
                f"<h3>{html.escape(message['title'])} <small><code>{html.escape(message['name'])}</code> · "
                f"schema version {message['x-xiuhua-schema-version']}</small></h3>"
                f"<p>{html.escape(message['summary'])}</p>"
                + (
                    f"<p><code>Nats-Msg-Id</code> = {html.escape(message['x-xiuhua-nats-msg-id'])}</p>"
                    if "x-xiuhua-nats-msg-id" in message
                    else "<p>Core NATS request/reply: no <code>Nats-Msg-Id</code>, nothing stored.</p>"
                )
                + f"<details open><summary>Example</summary>{_pre(message['examples'][0]['payload'])}</details>"
                f"<details><summary>Payload schema</summary>{_pre(message['payload'])}</details>"
                f'<p><a href="schemas/{html.escape(message["name"])}.json">JSON Schema document</a></p>'
            )
        parts.append("</section>")
        body.append("".join(parts))
    shared = "".join(
        f'<details id="schema-{html.escape(name)}"><summary><code>{html.escape(name)}</code></summary>{_pre(s)}'
        "</details>"
        for name, s in doc["components"]["schemas"].items()
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(info['title'])}</title><style>{_STYLE}</style></head><body>"
        f'<nav><b>Channels</b> (<span class="receive">in</span> / <span class="send">out</span>)'
        f"{''.join(nav)}<p><a href='asyncapi.json'>asyncapi.json</a> · <a href='asyncapi.yaml'>asyncapi.yaml</a> · "
        "<a href='docs/'>documentation</a></p>"
        f"</nav><main><h1>{html.escape(info['title'])}</h1><p>AsyncAPI {html.escape(doc['asyncapi'])} · "
        f"version {html.escape(info['version'])}</p><p>{html.escape(info['description'])}</p>"
        f"{''.join(body)}<section><h2>Shared schemas</h2>{shared}</section></main></body></html>"
    )


def pages() -> dict[str, tuple[str, bytes]]:
    """Path → (content type, body) of everything `--serve` offers, built from the contracts and docs/ now."""
    from contracts import asyncapi, export
    from xiuhua_tools import docs_site

    doc = asyncapi.document()
    out: dict[str, tuple[str, bytes]] = {
        "/": ("text/html; charset=utf-8", render_html(doc).encode()),
        "/asyncapi.json": ("application/json", asyncapi.render_json(doc).encode()),
        "/asyncapi.yaml": ("application/yaml; charset=utf-8", asyncapi.render_yaml(doc).encode()),
    }
    for name, text in export.documents().items():
        out[f"/schemas/{name}"] = ("application/json", text.encode())
    out.update(docs_site.pages())
    return out


def make_server(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) for the documents; port 0 picks a free one."""
    content = pages()
    handler = _handler(lambda path: content.get(path.split("?", 1)[0].replace("/index.html", "/")))
    return ThreadingHTTPServer((host, port), handler)


def _handler(lookup: Callable[[str], tuple[str, bytes] | None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = lookup(self.path)
            if found is None:
                self.send_error(404, "no such document")
                return
            ctype, body = found
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the console shows the URL only
            return

    return Handler


def _address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """The host and port the server listens on (typeshed allows bytes for a host; it is a str here)."""
    host, port = server.server_address[:2]
    return host.decode() if isinstance(host, bytes) else str(host), int(port)


def serve_in_background(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start the document server in a thread (tests, notebooks); returns it and its base URL."""
    server = make_server(host, port)
    threading.Thread(target=server.serve_forever, name="xiuhua-docs", daemon=True).start()
    h, p = _address(server)
    return server, f"http://{h}:{p}/"
