"""The local SMTP catcher of the embedded default: every message received becomes an `.eml` file.

Why: a new user clicks Send in the approval UI and opens the email that "went out" — a real SMTP
conversation (aiosmtpd), with nothing leaving the machine.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope


class EmlWriter:
    def __init__(self, folder: Path, on_message: Callable[[Path], object] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.on_message = on_message or (lambda path: None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        # aiosmtpd keeps the bytes as received (decode_data=False, its default)
        content = cast(bytes, envelope.original_content or envelope.content)
        found = re.search(rb"^Message-ID:\s*<([^>\r\n]+)>", content, re.IGNORECASE | re.MULTILINE)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", found.group(1).decode() if found else "no-message-id")[:120]
        path = self.folder / f"{len(list(self.folder.glob('*.eml'))) + 1:04d}-{stem}.eml"
        path.write_bytes(content)
        self.on_message(path)
        return "250 OK: saved"


def start_catcher(folder: Path, host: str = "127.0.0.1", port: int = 1025,
                  on_message: Callable[[Path], object] | None = None) -> Controller:
    """Start in a background thread; `.stop()` it when done."""
    controller = Controller(EmlWriter(folder, on_message), hostname=host, port=port)
    controller.start()
    return controller
