"""An Open311 GeoReport v2 client: post a service request to Xiuhua's Open311 API and poll it until it is
closed — what a citizens' app (随手拍) does.

    python examples/open311_client.py --base http://127.0.0.1:8001/open311/v2 --api-key KEY \\
        --service-code 0201 --lat 30.255 --long 120.16 --attribute BIN_TYPE=kitchen --description "垃圾桶满了"

Follows the spec: POST `requests.json` form-encoded (attributes as `attribute[CODE]`, multi-value lists as
`attribute[CODE][]`); the answer is a `service_request_id` or, while the case is still being made, a `token`
to resolve with GET `tokens/{token}.json`; GET `requests/{id}.json` gives the status (open/closed) and notes.
Errors come back as `[{"code", "description"}]`, raised here as `Open311Error`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx


class Open311Error(Exception):
    """The API answered with an error list (or something that is not GeoReport v2)."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        self.status = status
        self.errors = errors
        super().__init__(f"HTTP {status}: " + "; ".join(f"{e.get('code')} {e.get('description')}" for e in errors))


class Open311Client:
    """A GeoReport v2 client for one endpoint (base URL ends in `/open311/v2`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        jurisdiction_id: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.jurisdiction_id = jurisdiction_id
        self.http = http or httpx.AsyncClient(timeout=10.0)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.http.request(method, f"{self.base_url}/{path}", **kw)
        try:
            body = response.json()
        except ValueError:
            raise Open311Error(
                response.status_code, [{"code": response.status_code, "description": response.text[:200]}]
            ) from None
        if response.status_code >= 400:
            raise Open311Error(response.status_code, body if isinstance(body, list) else [body])
        return body

    def _params(self) -> dict[str, str]:
        return {"jurisdiction_id": self.jurisdiction_id} if self.jurisdiction_id else {}

    async def services(self) -> list[dict[str, Any]]:
        """GET services.json: the service list."""
        return list(await self._call("GET", "services.json", params=self._params()))

    async def service_definition(self, service_code: str) -> dict[str, Any]:
        """GET services/{code}.json: the attributes a request for this service takes."""
        return dict(await self._call("GET", f"services/{service_code}.json", params=self._params()))

    async def post_request(
        self,
        service_code: str,
        *,
        lat: float | None = None,
        long: float | None = None,
        address_string: str | None = None,
        description: str = "",
        attributes: Mapping[str, str | Sequence[str]] | None = None,
        media_url: str | None = None,
        **contact: str,
    ) -> dict[str, Any]:
        """POST requests.json; returns `{"service_request_id": ...}` or `{"token": ...}` (first element)."""
        form: dict[str, Any] = {
            "service_code": service_code,
            "description": description,
            **self._params(),
            **{k: v for k, v in contact.items() if v},
        }
        if self.api_key:
            form["api_key"] = self.api_key
        if lat is not None and long is not None:
            form["lat"], form["long"] = str(lat), str(long)
        if address_string:
            form["address_string"] = address_string
        if media_url:
            form["media_url"] = media_url
        for code, value in (attributes or {}).items():
            if isinstance(value, str):
                form[f"attribute[{code}]"] = value
            else:
                form[f"attribute[{code}][]"] = list(value)
        body = await self._call("POST", "requests.json", data=form)
        return dict(body[0])

    async def request_id_for(self, token: str) -> str | None:
        """GET tokens/{token}.json: the service_request_id once the case exists, else None."""
        body = await self._call("GET", f"tokens/{token}.json", params=self._params())
        return (body[0].get("service_request_id") if body else None) or None

    async def get_request(self, service_request_id: str) -> dict[str, Any]:
        """GET requests/{id}.json: the request's current state."""
        body = await self._call("GET", f"requests/{service_request_id}.json", params=self._params())
        return dict(body[0])

    async def poll(
        self,
        posted: Mapping[str, Any],
        *,
        until: Callable[[dict[str, Any]], bool] = lambda r: r.get("status") == "closed",
        interval: float = 2.0,
        timeout: float = 600.0,  # noqa: ASYNC109
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Resolve the token if needed, then poll the request until `until(request)`; returns the last state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        request_id = posted.get("service_request_id")
        last: dict[str, Any] = {}
        while loop.time() < deadline:
            if request_id is None:
                request_id = await self.request_id_for(str(posted["token"]))
            if request_id is not None:
                current = await self.get_request(str(request_id))
                if current != last and on_change is not None:
                    on_change(current)
                last = current
                if until(current):
                    return current
            await asyncio.sleep(interval)
        raise TimeoutError(f"request {request_id or posted} not done within {timeout}s; last seen {last}")


async def _main(args: argparse.Namespace) -> int:
    attributes: dict[str, Any] = {}
    for item in args.attribute:
        code, _, value = item.partition("=")
        attributes[code] = value.split("|") if "|" in value else value
    client = Open311Client(args.base, args.api_key)
    try:
        posted = await client.post_request(
            args.service_code,
            lat=args.lat,
            long=args.long,
            address_string=args.address,
            description=args.description,
            attributes=attributes,
            media_url=args.media_url,
        )
        print(f"posted: {posted}", flush=True)
        final = await client.poll(
            posted,
            interval=args.interval,
            timeout=args.timeout,
            on_change=lambda r: print(f"{r.get('status')}: {r.get('status_notes') or ''}", flush=True),
        )
        print(f"done: {final.get('service_request_id')} {final.get('status')}")
        return 0
    except Open311Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()


def main() -> int:
    """Command line entry."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="e.g. http://127.0.0.1:8001/open311/v2")
    p.add_argument("--api-key")
    p.add_argument("--service-code", required=True)
    p.add_argument("--lat", type=float)
    p.add_argument("--long", type=float)
    p.add_argument("--address")
    p.add_argument("--description", default="")
    p.add_argument("--media-url")
    p.add_argument("--attribute", action="append", default=[], help="CODE=value or CODE=a|b for a list")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    return asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
