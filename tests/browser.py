"""A real headless Chromium for the report tests: DOM dumps, screenshots, and a DOM reader.

Debian's ``chromium`` (or ``chromium-headless-shell``) is used as installed (``.ci/run`` installs
it). In CI (``CI=true``) a missing browser fails the test; elsewhere the test is skipped with
the reason. Run as root, Chromium needs ``--no-sandbox``; every networking extra is off.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

_NAMES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """The path of an installed Chromium, or None."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Browser:
    """A headless Chromium run once per page, with its own profile folder."""

    executable: str
    profile: Path

    def _run(self, url: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.executable, *_FLAGS, f"--user-data-dir={self.profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    def dump_dom(self, page: Path) -> str:
        """The page's DOM after loading, as Chromium serialises it."""
        return self._run(page.as_uri(), "--dump-dom").stdout

    def screenshot(self, page: Path, out: Path, size: tuple[int, int] = (1300, 6000)) -> Path:
        """A PNG screenshot of the page in a window of ``size`` pixels."""
        self._run(page.as_uri(), f"--window-size={size[0]},{size[1]}", f"--screenshot={out}")
        return out


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Browser:
    """The headless browser; fails in CI and skips elsewhere when none is installed."""
    executable = find_chromium()
    if executable is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: the browser test must run in CI")
        pytest.skip(reason)
    return Browser(executable, tmp_path_factory.mktemp("chromium-profile"))


@dataclass
class Dom:
    """What the report tests look at in a DOM: images, links, element ids, tables' rows."""

    images: list[dict[str, str]] = field(default_factory=list)
    urls: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, value)
    ids: set[str] = field(default_factory=set)
    rows: dict[str, int] = field(default_factory=dict)  # table id -> rows in its tbody
    meta: list[dict[str, str]] = field(default_factory=list)

    def images_of(self, kind: str) -> list[dict[str, str]]:
        return [i for i in self.images if i.get("data-kind") == kind]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.dom = Dom()
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.dom.ids.add(a["id"])
        for name in ("src", "href", "srcset", "action", "data", "poster"):
            if name in a:
                self.dom.urls.append((tag, name, a[name]))
        if tag == "img":
            self.dom.images.append(a)
        elif tag == "meta":
            self.dom.meta.append(a)
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table and self._in_body:
            self.dom.rows[self._table] = self.dom.rows.get(self._table, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False


def read_dom(html: str) -> Dom:
    """Parse a DOM dump (or the page's source) into a :class:`Dom`."""
    reader = _Reader()
    reader.feed(html)
    return reader.dom


def decode_data_uri(uri: str) -> Image.Image:
    """The image inside a ``data:image/...;base64,`` URI, decoded by Pillow (fully loaded)."""
    head, _, payload = uri.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64"), head[:40]
    image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    image.load()
    return image


def is_network_url(value: str) -> bool:
    """Whether a ``src``/``href`` value would make the browser fetch from a network."""
    v = value.strip().lower()
    return v.startswith(("http:", "https:", "//", "ftp:", "ws:", "wss:"))
