"""Landing CSVs read one physical line at a time, streamed: the reader trades and payments
share, so one bad line (broken quoting, bytes that are not UTF-8, a line past the csv
module's field limit) costs that line alone, never the rows around it or the file.

A quoted value may not span lines: a line is a row. Lines end at LF (CRLF works too); a
UTF-8 byte-order mark before the header is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

__all__ = ["LINE_LIMIT", "is_text", "line_chunks", "printable", "read_header", "split_line"]

BLOCK_BYTES = 1 << 20
LINE_LIMIT = csv.field_size_limit()
"""Bytes a line may hold (the csv module's own field limit, 128 KiB): a longer line is
`line_too_long` without being decoded, so a 50 MB line costs no more than its own reject."""
_BOM = b"\xef\xbb\xbf"
_LF = ord("\n")


def read_header(stream: BinaryIO) -> tuple[bytes | None, bytes, int]:
    """(the first non-blank line, the bytes read after it, the number of the line after it);
    None for a file with no such line."""
    buffer = stream.read(BLOCK_BYTES).removeprefix(_BOM)
    number = 1
    while True:
        cut = buffer.find(b"\n")
        if cut < 0:
            data = stream.read(BLOCK_BYTES)
            if data:
                buffer += data
                continue
            return (buffer, b"", number + 1) if buffer.strip() else (None, b"", number)
        line, buffer = buffer[: cut + 1], buffer[cut + 1 :]
        if line.strip():
            return line, buffer, number + 1
        number += 1


def line_chunks(
    stream: BinaryIO, rest: bytes, number: int, lines: int
) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, `lines` whole lines; the last chunk has what is left), read a
    block at a time so memory stays flat."""
    pieces = [rest]
    ends = [np.flatnonzero(np.frombuffer(rest, np.uint8) == _LF)]
    size, count, done = len(rest), len(ends[0]), False
    while True:
        if count >= lines or done:
            buffer, positions = b"".join(pieces), np.concatenate(ends)
            start = 0
            for k in range(lines - 1, len(positions), lines):
                stop = int(positions[k]) + 1
                yield number, buffer[start:stop]
                number, start = number + lines, stop
            if done:
                if buffer[start:]:
                    yield number, buffer[start:]
                return
            pieces, ends = [buffer[start:]], [positions[positions >= start] - start]
            size, count = len(pieces[0]), len(ends[0])
        data = stream.read(BLOCK_BYTES)
        if data:
            pieces.append(data)
            ends.append(np.flatnonzero(np.frombuffer(data, np.uint8) == _LF) + size)
            size, count = size + len(data), count + len(ends[-1])
        else:
            done = True


def is_text(line: bytes) -> bool:
    """Valid UTF-8 without a NUL: no text file holds one, and PostgreSQL text cannot."""
    if b"\x00" in line:
        return False
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def printable(line: bytes) -> str:
    """The line as text a warehouse can store: bad bytes and NULs as U+FFFD."""
    return line.decode("utf-8", "replace").replace("\x00", "\ufffd")


def split_line(line: bytes) -> tuple[list[str] | None, str | None]:
    """(fields, problem) of one physical line, its line ending dropped. problem is None,
    `line_too_long` (no fields), `malformed_row` (broken quoting: no fields) or `bad_encoding`
    (not UTF-8, or a NUL: fields read with U+FFFD for the bad bytes when they split at all)."""
    if len(line) > LINE_LIMIT:
        return None, "line_too_long"
    text = printable(line).rstrip("\r\n")
    problem = None if is_text(line) else "bad_encoding"
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        return None, problem or "malformed_row"
    return (rows[0] if rows else []), problem
