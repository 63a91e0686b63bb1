"""Read a paged JSON list: none, page, offset, link or cursor, capped and checked against totals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jmespath
import structlog

from exporter.sources.json_config import PagingModel
from exporter.sources.json_mapping import items_of, search

log = structlog.get_logger()

Params = dict[str, str | int]


@dataclass(frozen=True)
class Page:
    """One answer of a list endpoint: its parsed body and headers."""

    body: Any
    headers: httpx.Headers


# (path or absolute URL, query) -> page; the source adds auth, ETags and stats.
Fetch = Callable[[str, Params], Awaitable[Page]]
# Called with each page's items; True stops paging (newest-first reached known jobs).
StopAt = Callable[[list[Any]], bool]


@dataclass
class Listing:
    """Every item read in one poll of one list, and whether that was the whole list."""

    items: list[Any] = field(default_factory=list)
    complete: bool = True
    pages: int = 0
    date: str | None = None  # Date header of the first answer: the next watermark


def _total(paging: PagingModel, body: Any, endpoint: str) -> int | None:
    """Read the API's own item count; not a count means the API changed or lies."""
    if paging.total is None:
        return None
    value = search(jmespath.compile(paging.total), body, endpoint)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _next_link(headers: httpx.Headers) -> str | None:
    """Return the `rel="next"` URL of a Link header."""
    for link in httpx.Response(200, headers={"Link": headers.get("Link", "")}).links.values():
        if link.get("rel") == "next" and link.get("url"):
            return str(link["url"])
    return None


def same_origin(url: str, base_url: str) -> bool:
    """Follow next-page URLs only to the configured API host, never elsewhere."""
    target, base = urlsplit(url), urlsplit(base_url)
    if not target.scheme:
        return True
    return (target.scheme, target.netloc) == (base.scheme, base.netloc)


class PageReader:
    """Walk one list's pages for one poll, up to max_pages."""

    def __init__(self, fetch: Fetch, paging: PagingModel, items: str, endpoint: str,
                 base_url: str) -> None:
        self._fetch = fetch
        self._paging = paging
        self._items = jmespath.compile(items)
        self._endpoint = endpoint
        self._base_url = base_url

    async def read(self, path: str, params: Params, stop: StopAt | None = None) -> Listing:
        """Read pages until the list ends, `stop` says so, or the cap is hit (incomplete)."""
        out = Listing()
        target: str | None = path
        query = self._first_query(params)
        first_total: int | None = None
        while target is not None:
            if out.pages >= self._paging.max_pages:
                out.complete = False
                log.info("json_page_cap_reached", endpoint=self._endpoint, pages=out.pages)
                break
            page = await self._fetch(target, query)
            out.pages += 1
            if out.date is None:
                out.date = page.headers.get("Date")
            items = items_of(self._items, page.body, self._endpoint)
            out.items.extend(items)
            total = _total(self._paging, page.body, self._endpoint)
            first_total = total if first_total is None else first_total
            if total is not None and (total != first_total or len(out.items) > total):
                out.complete = False  # the list changed while paging: an item may be missed
            if not items:
                break
            if stop is not None and stop(items):
                out.complete = False  # newest-first: the rest is already known
                break
            target, query = self._next(page, path, query, len(items), total, len(out.items))
        return out

    def _first_query(self, params: Params) -> Params:
        """Add the paging parameters of the first page."""
        p = self._paging
        query = dict(params)
        if p.style == "page":
            query[p.page_param] = p.first_page
            query[p.size_param or "per_page"] = p.page_size
        elif p.style == "offset":
            query[p.offset_param] = 0
            query[p.size_param or "limit"] = p.page_size
        return query

    def _next(self, page: Page, path: str, query: Params, got: int, total: int | None,
              seen: int) -> tuple[str | None, Params]:
        """Return where the next page is, or (None, ...) when the list has ended."""
        p = self._paging
        if p.style == "page":
            if (total is not None and seen >= total) or got < p.page_size:
                return None, query
            page_no = int(query[p.page_param]) + 1
            return path, {**query, p.page_param: page_no}
        if p.style == "offset":
            offset = int(query[p.offset_param]) + got  # servers may cap the limit silently
            if total is None and got < p.page_size:
                return None, query
            return (path if total is None or offset < total else None,
                    {**query, p.offset_param: offset})
        if p.style == "link":
            return self._follow(_next_link(page.headers))
        if p.style == "cursor" and p.cursor is not None:
            token = search(jmespath.compile(p.cursor), page.body, self._endpoint)
            if token in (None, ""):
                return None, query
            if p.cursor_param is not None:
                return path, {**query, p.cursor_param: str(token)}
            return self._follow(str(token))
        return None, query

    def _follow(self, url: str | None) -> tuple[str | None, Params]:
        """Follow a next-page URL as given (it carries its own query), same host only."""
        if url is None:
            return None, {}
        if not same_origin(url, self._base_url):
            log.warning("json_next_page_other_host", endpoint=self._endpoint)
            return None, {}
        return url, {}
