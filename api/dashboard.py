"""The web dashboard's files, served by the API process at ``/dashboard/``.

``make dashboard`` (part of ``make install``/``run``/``test``) bundles ``dashboard/src`` into
:data:`DIST`: ``index.html`` and ``assets/<name>-<hash>.<ext>``.  Served here:

* ``/`` and ``/dashboard`` redirect to ``/dashboard/``;
* ``/dashboard/`` (and ``/dashboard/index.html``) is ``index.html``, ``Cache-Control:
  no-cache`` so a new build is picked up at the next load;
* ``/dashboard/assets/<file>``: content-hashed names, so cached for a year as immutable.

A path from a request never reaches the filesystem: the asset's name must be a plain file
name (letters, digits, ``.``, ``_``, ``-``; no leading dot) found in the listing of
``dist/assets`` made by the server itself, and the file found must still resolve inside
:data:`DIST`; anything else is 404.  Every answer carries a Content-Security-Policy that lets
the page load only this server's scripts, styles, images and connections.  Without a build,
503 says how to make one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

# The one place the dashboard's build is looked for: beside the ``api`` package, in the
# repository (or source tree) Lookout runs from.
DIST = Path(__file__).resolve().parent.parent / "dashboard" / "dist"
PREFIX = "/dashboard"

CSP = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
IMMUTABLE = "public, max-age=31536000, immutable"
ASSET_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
NOT_BUILT = ("The dashboard is not built: run `make dashboard` (or `make install`) in the "
             "Lookout folder, then reload this page.\n")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
               ".txt": "text/plain; charset=utf-8", ".png": "image/png",
               ".woff2": "font/woff2", ".json": "application/json", ".map": "application/json"}


class DashboardFiles:
    """The files of one build directory; the asset listing is made again when the
    directory changes (a rebuild while the server runs)."""

    def __init__(self, dist: Path) -> None:
        self.dist = dist
        self._listing: tuple[tuple[int, int], frozenset[str]] | None = None

    def built(self) -> bool:
        return (self.dist / "index.html").is_file()

    def _assets(self) -> frozenset[str]:
        folder = self.dist / "assets"
        try:
            st = folder.stat()
        except OSError:
            return frozenset()
        key = (st.st_mtime_ns, st.st_ino)
        if self._listing is None or self._listing[0] != key:
            try:
                names = frozenset(e.name for e in os.scandir(folder)
                                  if e.is_file(follow_symlinks=False))
            except OSError:
                names = frozenset()
            self._listing = (key, names)
        return self._listing[1]

    def _inside(self, path: Path) -> Path | None:
        try:
            real = path.resolve(strict=True)
        except OSError:
            return None
        root = self.dist.resolve()
        return real if real.is_relative_to(root) and real.is_file() else None

    def index(self) -> Path | None:
        return self._inside(self.dist / "index.html")

    def asset(self, name: str) -> Path | None:
        """The asset called ``name``, or None: only names of files the listing holds."""
        if not ASSET_NAME.match(name) or name not in self._assets():
            return None
        return self._inside(self.dist / "assets" / name)


def _headers(cache: str) -> dict[str, str]:
    return {**HEADERS, "Cache-Control": cache}


def _not_found() -> Response:
    return PlainTextResponse("not found\n", 404, headers=_headers("no-store"))


def _file(path: Path, cache: str) -> Response:
    media = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media, headers=_headers(cache))


def routes(dist: Path = DIST) -> list[Route]:
    files = DashboardFiles(dist)

    async def to_dashboard(_: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", 307, headers=_headers("no-store"))

    async def page(request: Request) -> Response:
        path: str = request.path_params.get("path", "")
        if not files.built():
            return PlainTextResponse(NOT_BUILT, 503, headers={**_headers("no-store"),
                                                              "Retry-After": "60"})
        if path in ("", "index.html"):
            index = files.index()
            return _file(index, "no-cache") if index else _not_found()
        folder, sep, name = path.partition("/")
        if folder != "assets" or not sep:
            return _not_found()
        found = files.asset(name)
        return _file(found, IMMUTABLE) if found else _not_found()

    methods = ["GET", "HEAD"]
    return [
        Route("/", to_dashboard, methods=methods, include_in_schema=False),
        Route(PREFIX, to_dashboard, methods=methods, include_in_schema=False),
        Route(PREFIX + "/{path:path}", page, methods=methods, include_in_schema=False),
    ]
