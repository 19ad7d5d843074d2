"""Reading back the PNG files the figures module writes."""

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a complete PNG file; fails on anything else (bad signature, broken chunk, no end)."""
    data = Path(path).read_bytes()
    assert data[:8] == SIGNATURE, f"{path}: not a PNG file"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: chunk {kind!r} is damaged"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", f"{path}: incomplete PNG"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    return width, height
