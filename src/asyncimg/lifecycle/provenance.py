"""What made an image, written inside the image: PNG text chunks, JPEG EXIF and XMP.

A frame handed to an editor, or found in a folder months later, still says which prompt,
model, task and reference images made it; `asyncimg show FILE` reads it back. The chunks
and segments are spliced into the bytes as they are (no re-encoding, pixels untouched), so
adding them costs microseconds. Other formats (WEBP, BMP) are saved without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from PIL import Image

from asyncimg.store.record import TaskRecord

#: The keys written, in this order (PNG keywords, XMP attributes in our namespace).
KEYS = (
    "prompt",
    "full_prompt",
    "model",
    "task_id",
    "seed",
    "style",
    "references",
    "frame_id",
)
SOFTWARE = "asyncimg"
XMP_NS = "urn:asyncimg:provenance:1"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_EXIF_HEADER = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769
_MAX_SEGMENT = 65533  # a JPEG segment's payload, less its length field


def provenance_of(record: TaskRecord) -> dict[str, str]:
    """The provenance of `record`'s image as text fields (reference files hashed now)."""
    refs = [
        {"file": path, "sha256": file_sha256(record.resolve(path))}
        for path in record.character_images
    ]
    seed = record.params.get("seed")
    fields = {
        "prompt": record.prompt,
        "full_prompt": record.full_prompt,
        "model": record.req_key,
        "task_id": record.task_id or "",
        "seed": "" if seed is None else str(seed),
        "style": record.style or "",
        "references": json.dumps(refs, ensure_ascii=False) if refs else "",
        "frame_id": record.frame_id or "",
    }
    return {k: v for k, v in fields.items() if v}


def file_sha256(path: Path) -> str:
    """The file's sha256, or "missing" when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def embed(data: bytes, fields: Mapping[str, str]) -> bytes:
    """`data` (PNG or JPEG bytes) with `fields` inside; other formats come back as they are."""
    if not fields:
        return data
    if data.startswith(_PNG_SIGNATURE):
        return _embed_png(data, fields)
    if data.startswith(b"\xff\xd8"):
        return _embed_jpeg(data, fields)
    return data


def read(path: Path) -> dict[str, str]:
    """The provenance fields inside the image at `path` ({} when it carries none).

    Raises OSError when the file cannot be read and ValueError when it is not an image.
    """
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            info = dict(img.info)
            text = dict(getattr(img, "text", {}) or {})
            exif = img.getexif()
    except Exception as exc:  # Pillow raises many kinds for what is not an image
        raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None
    if text.get("Software") == SOFTWARE or any(k in text for k in ("task_id", "full_prompt")):
        return {k: str(text[k]) for k in KEYS if k in text}
    xmp = info.get("xmp")
    if isinstance(xmp, bytes | str):
        found = _read_xmp(xmp.encode("utf-8") if isinstance(xmp, str) else xmp)
        if found:
            return found
    return _read_exif_comment(exif)


# -- PNG -----------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _itxt(keyword: str, value: str) -> bytes:
    """An uncompressed iTXt chunk: UTF-8 text, so a Chinese prompt stays as typed."""
    body = keyword.encode("latin-1") + b"\x00\x00\x00" + b"\x00" + b"\x00" + value.encode("utf-8")
    return _chunk(b"iTXt", body)


def _embed_png(data: bytes, fields: Mapping[str, str]) -> bytes:
    """Text chunks inserted just before the first IDAT (after IHDR and any palette)."""
    start = _first_idat(data)
    if start is None:
        return data
    chunks = [_itxt("Software", SOFTWARE)]
    chunks += [_itxt(k, fields[k]) for k in KEYS if k in fields]
    return data[:start] + b"".join(chunks) + data[start:]


def _first_idat(data: bytes) -> int | None:
    """The offset of the first IDAT chunk, walking the chunks (None if there is none)."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            return pos
        pos += 12 + length
    return None


# -- JPEG ----------------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _xmp_packet(fields: Mapping[str, str]) -> bytes:
    attrs = " ".join(f"a:{k}={quoteattr(fields[k])}" for k in KEYS if k in fields)
    description = quoteattr(fields.get("prompt", ""))
    xml = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:a="{XMP_NS}" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmp:CreatorTool="{SOFTWARE}" {attrs}>'
        f'<a:description xml:lang="x-default">{description[1:-1]}</a:description>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    return _XMP_HEADER + xml.encode("utf-8")


def _exif(fields: Mapping[str, str]) -> bytes:
    """EXIF with Software, an ASCII ImageDescription when the prompt is ASCII, and every
    field as JSON in UserComment (UNICODE, so Chinese survives)."""
    exif = Image.Exif()
    exif[0x0131] = SOFTWARE
    prompt = fields.get("prompt", "")
    if prompt.isascii():
        exif[0x010E] = prompt
    comment = json.dumps({k: fields[k] for k in KEYS if k in fields}, ensure_ascii=False)
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\x00" + comment.encode("utf-16-be")
    return exif.tobytes()


def _embed_jpeg(data: bytes, fields: Mapping[str, str]) -> bytes:
    """APP1 EXIF and XMP after SOI and any APP0 (JFIF); earlier EXIF/XMP segments dropped."""
    pos, head, kept = 2, [data[:2]], []
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9) or not 0xE0 <= marker <= 0xEF:
            break  # the image data (or a table) starts: app segments are over
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos : pos + 2 + length]
        payload = segment[4:]
        if marker == 0xE0:
            head.append(segment)
        elif not (marker == 0xE1 and payload.startswith((_EXIF_HEADER, _XMP_HEADER))):
            kept.append(segment)
        pos += 2 + length
    ours = [_exif(fields), _xmp_packet(fields)]
    inserted = [_segment(0xE1, p) for p in ours if len(p) <= _MAX_SEGMENT]
    return b"".join(head) + b"".join(inserted) + b"".join(kept) + data[pos:]


def _read_xmp(packet: bytes) -> dict[str, str]:
    try:
        root = ElementTree.fromstring(packet.strip(b"\x00"))
    except ElementTree.ParseError:
        return {}
    for node in root.iter():
        attrs = {name: node.attrib.get(f"{{{XMP_NS}}}{name}") for name in KEYS}
        found = {name: value for name, value in attrs.items() if value is not None}
        if found:
            return found
    return {}


def _read_exif_comment(exif: Image.Exif) -> dict[str, str]:
    raw: Any = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if not isinstance(raw, bytes) or not raw.startswith(b"UNICODE\x00"):
        return {}
    body = raw[8:]
    for encoding in ("utf-16-be", "utf-16-le"):
        try:
            data = json.loads(body.decode(encoding))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            return {k: str(data[k]) for k in KEYS if k in data}
    return {}
