"""The subject's download page: the e-mailed link, then the one-time code, then the export.

Public (no dashboard sign-in): the subject has the link from one e-mail and the code from
another (`orchestrator.artifacts.delivery`). GET shows a form asking for the code; POST checks
the link's token (expiring, signed) and redeems the code (single use, constant-time compare,
void after a few wrong tries) before the export streams, decrypted on the fly. Nothing here
logs the token, the code or anything personal; messages name only what to do next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from jinja2 import Environment

from orchestrator.artifacts.delivery import SUBJECT_PAGE, CodeRefused, DownloadCodes
from orchestrator.artifacts.downloads import (
    Download,
    Downloads,
    InvalidToken,
    NotAvailable,
    TokenExpired,
)

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="nl"><head><meta charset="utf-8"><title>Download / Downloaden</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main>
<h1>Uw gegevens downloaden / Download your data</h1>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
{% if form %}
<form method="post">
<label for="code">Eenmalige code uit de aparte e-mail / One-time code from the separate e-mail
</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit">Download</button>
</form>
{% endif %}
</main></body></html>
"""
)


def add_subject_routes(
    app: web.Application, downloads: Callable[[], Downloads], data_dir: Path
) -> None:
    """Serve the subject's download page at `SUBJECT_PAGE` (public: the caller's sign-in
    middleware must let paths under it through)."""
    page = SubjectDownloads(downloads, DownloadCodes(data_dir))
    app.add_routes(
        [
            web.get(SUBJECT_PAGE + "{token}", page.form),
            web.post(SUBJECT_PAGE + "{token}", page.download),
        ]
    )


class SubjectDownloads:
    """The two handlers of the subject's download page."""

    def __init__(self, downloads: Callable[[], Downloads], codes: DownloadCodes) -> None:
        self._downloads = downloads
        self._codes = codes

    async def form(self, request: web.Request) -> web.Response:
        """The code form, or why the link no longer works."""
        try:
            await asyncio.to_thread(self._downloads().check_token, request.match_info["token"])
        except TokenExpired:
            return _page("This link has expired; ask us for a new one.", status=410)
        except InvalidToken:
            return _page("This link is not valid.", status=404)
        return _page(None, form=True)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The export, once the token holds and the code is redeemed."""
        token = request.match_info["token"]
        code = str((await request.post()).get("code", ""))
        service = self._downloads()
        try:
            grant = await asyncio.to_thread(service.check_token, token)
            if grant.kind != "export":
                raise InvalidToken("not an export link")
            await asyncio.to_thread(self._codes.redeem, grant.request_id, code)
            download = await asyncio.to_thread(service.open, token)
        except TokenExpired:
            return _page("This link has expired; ask us for a new one.", status=410)
        except (InvalidToken, NotAvailable):
            return _page("This link is not valid, or the file is no longer kept.", status=404)
        except CodeRefused as exc:
            return _page(str(exc), form=True, status=403)
        return await stream(request, download)


async def stream(request: web.Request, download: Download) -> web.StreamResponse:
    """Stream a download to the browser (chunks read in a thread: the export is decrypted)."""
    response = web.StreamResponse(
        headers={
            "Content-Disposition": f'attachment; filename="{download.filename}"',
            "Content-Type": download.media_type,
            "Content-Length": str(download.size),
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    chunks = iter(download.chunks)
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        await response.write(chunk)
    await response.write_eof()
    return response


def _page(error: str | None, *, form: bool = False, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.render(error=error, form=form),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


__all__ = ["SUBJECT_PAGE", "SubjectDownloads", "add_subject_routes", "stream"]
