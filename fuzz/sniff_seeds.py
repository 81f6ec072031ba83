#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_sniff.c into the directory given.

Small files of each type the sniffer knows, built here from the formats'
specifications (the same shapes as t/unit/test_sniff.c builds), so that
the fuzzer starts from every branch: PNG, JPEG (baseline, progressive,
Exif, fill bytes and standalone markers), GIF87a/89a, WebP (VP8, VP8L,
VP8X), PDF, text (a BOM, HTML, SVG, a sequence cut at the end).
scripts/fuzz.sh runs it; no binary seed is kept in the repository.

Usage: fuzz/sniff_seeds.py DIR
"""

import os
import struct
import sys
import zlib


def png(width, height):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    rows = b"".join(b"\0" + bytes((x * 37) & 0xff for x in range(3 * width))
                    for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                         8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def segment(marker, body):
    return bytes((0xff, marker)) + struct.pack(">H", len(body) + 2) + body


def jpeg(sof, width, height, extra=b""):
    return (b"\xff\xd8"
            + segment(0xe0, b"JFIF\0\x01\x02\0\0\x48\0\x48\0\0")
            + extra
            + segment(0xdb, b"\0" + b"\x01" * 64)
            + segment(sof, struct.pack(">BHHB", 8, height, width, 3)
                      + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00")
            + segment(0xc4, b"\0\x01" + b"\0" * 15 + b"\0")
            + segment(0xda, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
            + bytes((i * 29 + 3) & 0xff for i in range(16))
            + b"\xff\x00\x12\xff\xd0\x34\xff\xd9")


def gif(version, width, height):
    return (version + struct.pack("<HH", width, height)
            + b"\x80\0\0" + b"\0\0\0\xff\xff\xff"
            + b"\x2c\0\0\0\0\x01\0\x01\0\0" + b"\x02\x02\x44\x01\0" + b"\x3b")


def riff(chunks):
    body = b"WEBP" + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_chunk(fourcc, data):
    return fourcc + struct.pack("<I", len(data)) + data


def vp8(width, height):
    tag = (1 << 4) | (8 << 5)
    return webp_chunk(b"VP8 ", struct.pack("<I", tag)[:3] + b"\x9d\x01\x2a"
                      + struct.pack("<HH", width, height)
                      + bytes(range(8)))


def vp8l(width, height):
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)
    return webp_chunk(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x07\0\0")


def vp8x(width, height):
    return webp_chunk(b"VP8X", b"\x10\0\0\0"
                      + struct.pack("<I", width - 1)[:3]
                      + struct.pack("<I", height - 1)[:3])


SEEDS = {
    "png_3x2": png(3, 2),
    "jpeg_baseline": jpeg(0xc0, 640, 480),
    "jpeg_progressive": jpeg(0xc2, 1024, 768),
    "jpeg_exif": jpeg(0xc1, 4032, 3024,
                      segment(0xe1, b"Exif\0\0MM\0\x2a" + b"\0" * 1000)),
    "jpeg_markers": jpeg(0xc9, 800, 600,
                         b"\xff" * 5 + b"\x01\xff\xd3"
                         + segment(0xc4, b"\x7f" * 10)
                         + segment(0xc8, b"\x11" * 6)
                         + segment(0xcc, b"\x10\x10")
                         + segment(0xfe, b"comment")
                         + b"\xff\xff\xff"),
    "gif87a": gif(b"GIF87a", 320, 200),
    "gif89a": gif(b"GIF89a", 1, 1),
    "webp_vp8": riff(vp8(640, 480)),
    "webp_vp8l": riff(vp8l(400, 300)),
    "webp_vp8x": riff(vp8x(1920, 1080) + vp8l(1, 1)),
    "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n"
            b"endobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"),
    "text": "Grüße, ✓ 🙂 Привет\ntab\there\r\n\f".encode(),
    "text_bom": b"\xef\xbb\xbf" + "日本語\n".encode(),
    "text_cut": b"ok \xe2\x9c",
    "html": b"<!DOCTYPE html>\n<html><script>alert(1)</script></html>\n",
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"'
            b' onload="alert(1)"/>\n'),
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1].strip())
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed_" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
