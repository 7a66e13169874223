"""The organization's intelligence store: where a Solver finds the MISP event of a CTI.

Default: a directory of MISP JSON files named `<misp-uuid>.json` (solvers/<org>/intel/ in
the network's state dir). Where an operator has a MISP server, `MispServerStore` fetches
the event through pymisp. Either way the event is validated with pymisp's MISPEvent and
must carry the UUID the listing names; anything else raises IntelError with the reason,
and the Solver rejects the task with that reason rather than deliver garbage.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Protocol

from pymisp import MISPEvent

from solver.errors import IntelError
from testbed.cti.misp import MispEventError, parse_event
from testbed.state import write_text_atomic

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class IntelStore(Protocol):
    def load(self, misp_uuid: str) -> bytes:
        """The validated MISP event JSON for `misp_uuid`; IntelError with a reason otherwise."""
        ...


def validate_event(raw: bytes | str, misp_uuid: str | None = None) -> MISPEvent:
    """Parse and check a MISP event (testbed.cti.misp.parse_event); IntelError says what is wrong."""
    try:
        return parse_event(raw, misp_uuid)
    except MispEventError as exc:
        raise IntelError(str(exc)) from None


class DirectoryStore:
    """A directory of MISP JSON files, one per event: `<uuid>.json`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._validated: dict[str, bytes] = {}  # uuid -> the bytes that last passed validate_event

    def path(self, misp_uuid: str) -> Path:
        if not UUID_RE.match(misp_uuid):
            raise IntelError(f"listing names {misp_uuid!r}, which is not a MISP event UUID")
        return self.directory / f"{misp_uuid.lower()}.json"

    def load(self, misp_uuid: str) -> bytes:
        path = self.path(misp_uuid)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise IntelError(f"no MISP event {misp_uuid} in the intelligence store") from None
        except OSError as exc:
            raise IntelError(f"cannot read MISP event {misp_uuid}: {exc.strerror}") from None
        if self._validated.get(misp_uuid) != raw:  # pymisp's parse is a tenth of a busy Solver's time
            validate_event(raw, misp_uuid)
            self._validated[misp_uuid] = raw
        return raw

    def put(self, event: MISPEvent) -> Path:
        """Write an event atomically (the Solver may read it at any moment)."""
        path = self.path(str(event.uuid))
        write_text_atomic(path, event.to_json(sort_keys=True, indent=1), 0o600)
        return path


class MispServerStore:
    """A MISP server through pymisp (`PyMISP(url, key).get_event(uuid)`)."""

    def __init__(self, url: str, key: str, *, ssl: bool = True, timeout: float = 20.0) -> None:
        self.url, self.key, self.ssl, self.timeout = url, key, ssl, timeout
        self._misp = None

    def _client(self):
        if self._misp is None:
            from pymisp import PyMISP

            try:
                self._misp = PyMISP(self.url, self.key, ssl=self.ssl, timeout=self.timeout, tool="cti-testbed solver")
            except Exception as exc:  # noqa: BLE001 - pymisp: requests, its own, ValueError
                raise IntelError(f"cannot connect to the MISP server {self.url}: {exc}") from None
        return self._misp

    def load(self, misp_uuid: str) -> bytes:
        if not UUID_RE.match(misp_uuid):
            raise IntelError(f"listing names {misp_uuid!r}, which is not a MISP event UUID")
        try:
            answer = self._client().get_event(misp_uuid, pythonify=False)
        except IntelError:
            raise
        except Exception as exc:  # noqa: BLE001 - pymisp raises many types (requests, its own, ValueError) for a failed fetch
            raise IntelError(f"MISP server {self.url}: cannot get event {misp_uuid}: {exc}") from None
        if not isinstance(answer, dict) or "errors" in answer:
            raise IntelError(f"MISP server {self.url} has no event {misp_uuid}: {answer.get('errors') if isinstance(answer, dict) else answer}")
        raw = json.dumps(answer, sort_keys=True).encode()
        validate_event(raw, misp_uuid)
        return raw


def open_store(spec: str | Path, *, misp_key: str | None = None) -> IntelStore:
    """A store from a location: an http(s) URL is a MISP server (key from the argument or
    MISP_KEY), anything else a directory."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        key = misp_key or os.environ.get("MISP_KEY")
        if not key:
            raise IntelError(f"the MISP server {text} needs an API key", hint="set MISP_KEY in the Solver's environment")
        return MispServerStore(text, key, ssl=os.environ.get("MISP_VERIFY_TLS", "1") != "0")
    return DirectoryStore(Path(text))
