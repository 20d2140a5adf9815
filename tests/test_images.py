"""Image loading refuses decompression bombs from the header and names the file and row."""

import struct
import zlib

import numpy as np
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


# ------------------------------------------------------------------------------------------ modes, shapes, paths
def test_black_lines_on_a_transparent_background_stay_black_on_white():
    """RGBA / LA / P-with-transparency figures are composited on white (convert("RGB") made them all black)."""
    rgba = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    for x in range(40):
        rgba.putpixel((x, 10), (0, 0, 0, 255))  # one black line
    la = rgba.convert("LA")
    palette = Image.new("P", (40, 20), 0)
    palette.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    for x in range(40):
        palette.putpixel((x, 10), 1)
    palette.info["transparency"] = 0  # index 0 (black) is transparent, index 1 (black) is the line
    for image in (rgba, la, palette):
        loaded = load_image(image)
        assert loaded.mode == "RGB"
        assert loaded.getpixel((5, 2)) == (255, 255, 255), image.mode
        assert loaded.getpixel((5, 10)) == (0, 0, 0), image.mode


def test_16_bit_and_float_greyscale_scale_to_8_bits_not_white(tmp_path):
    ramp16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp16).save(path)
    loaded = np.asarray(load_image(path))[..., 0]
    assert loaded.min() == 0 and loaded.max() == 255 and 100 < loaded.mean() < 155  # not washed out to white
    assert loaded[32, 0] == round(32 * 64 * 16 / 257)
    floats = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    tiff = tmp_path / "f.tiff"
    Image.fromarray(floats).save(tiff)
    grey = np.asarray(load_image(tiff))[..., 0]
    assert grey[0, 0] == 0 and grey[-1, -1] == 255 and grey[4, 0] == round(32 / 63 * 255)


def test_a_fifo_as_an_image_path_is_refused_not_read(tmp_path):
    import os
    import threading

    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_image(fifo, where="rows.jsonl line 2")
        except ImageError as error:
            outcome.append(str(error))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the test process can exit
        with open(fifo, "wb"):
            pass
        pytest.fail("load_image blocked on a FIFO")
    assert outcome and "rows.jsonl line 2: image path" in outcome[0] and "not a regular file" in outcome[0]


@pytest.mark.parametrize("size,message", [((3000, 10), "aspect ratio of 300:1"), ((0, 0), "0x0 pixels")])
def test_shapes_the_resize_rule_refuses_are_row_errors_at_load(tmp_path, size, message):
    good = Image.new("RGB", (30, 20), "white")
    bad = Image.new("RGB", size, "white")
    rows = [Row({"image": good}, 0, "d.jsonl line 1"), Row({"image": bad}, 1, "d.jsonl line 2")]

    def convert(row):
        from mmdps import tasks

        return tasks.get("geometry").make_item(id=row.index, question="q", ground_truth="1",
                                               images=[load_image(row.data["image"], where=row.where)])

    with pytest.raises(ImageError, match=rf"d\.jsonl line 2: image is .*{message}"):
        build_items(rows, convert, source="d.jsonl")
    with pytest.warns(UserWarning, match="skipped 1 invalid row"):
        assert [item.id for item in build_items(rows, convert, source="d.jsonl", skip_invalid=True)] == [0]
    if size == (3000, 10):
        path = tmp_path / "wide.png"
        bad.save(path)
        with pytest.raises(ImageError, match=r"image file .*wide\.png is 3000x10 pixels"):
            load_image(path)
