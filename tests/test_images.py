"""Image loading refuses decompression bombs from the header and names the file and row."""

import struct
import zlib

import pytest
from PIL import Image

from mmdps.data.images import MAX_IMAGE_PIXELS, PIXEL_LIMIT_ENV, ImageError, load_image
from mmdps.data.loaders import Row, build_items


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` grey pixels (the data is a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header_naming_file_and_row(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))  # 400 MP: PIL's own DecompressionBombError before
    with pytest.raises(ImageError, match=r"train\.jsonl line 3: image file .*bomb\.png has 400,000,000 pixels, "
                                         r"above the limit of 64,000,000.*MMDPS_MAX_IMAGE_PIXELS"):
        load_image(bomb, where="train.jsonl line 3")
    with pytest.raises(ImageError, match=r"row 7: image bytes has 400,000,000 pixels"):
        load_image({"bytes": png_header_only(20000, 20000)}, where="row 7")


def test_an_image_under_pils_limit_but_over_ours_is_refused_before_decoding(tmp_path):
    # 9000 x 8000 = 72 MP: PIL would decode it (72 MB here, 850 MB for a 13000^2 RGB one); the header
    # says it is too big, so nothing is decoded (decoding these 64 bytes would fail as "truncated").
    with pytest.raises(ImageError, match="above the limit"):
        load_image(png_header_only(9000, 8000), where="r")
    assert 9000 * 8000 > MAX_IMAGE_PIXELS


def test_the_pixel_limit_is_configurable_per_call_and_per_process(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(path)
    assert load_image(path).size == (40, 30)
    with pytest.raises(ImageError, match=r"1,200 pixels \(40x30\), above the limit of 1,000"):
        load_image(path, max_image_pixels=1000)
    with pytest.raises(ImageError, match="above the limit of 1,000"):
        load_image(Image.new("RGB", (40, 30)), max_image_pixels=1000)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "1000")
    with pytest.raises(ImageError, match="above the limit of 1,000"):
        load_image(path)
    monkeypatch.setenv(PIXEL_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match="MMDPS_MAX_IMAGE_PIXELS='lots' must be a positive whole number"):
        load_image(path)


def test_decoder_errors_that_are_not_oserror_become_image_errors(tmp_path):
    broken = tmp_path / "broken.png"
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "blue").save(good)
    data = bytearray(good.read_bytes())
    data[20] ^= 0xFF  # corrupt the IHDR: PIL raises SyntaxError ("broken PNG file"), not OSError
    broken.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"f\.jsonl line 2: image file .*broken\.png is corrupt or not an image"):
        load_image(broken, where="f.jsonl line 2")


def test_skip_invalid_skips_and_counts_a_bomb_row(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(20000, 20000))
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    rows = [Row({"image": name}, i, f"data.jsonl line {i + 1}") for i, name in enumerate(["ok.png", "bomb.png"])]

    def convert(row):
        load_image(row.data["image"], base_dir=tmp_path, where=row.where)
        from mmdps.data.item import Item
        return Item(id=row.index, messages=[{"role": "user", "content": "q"}], ground_truth="1", verifier="math")

    with pytest.raises(ImageError, match="data.jsonl line 2"):
        build_items(rows, convert, source="data.jsonl")
    with pytest.warns(UserWarning, match=r"skipped 1 invalid row\(s\); first: data\.jsonl line 2: .*above the limit"):
        items = build_items(rows, convert, source="data.jsonl", skip_invalid=True)
    assert [item.id for item in items] == [0]
