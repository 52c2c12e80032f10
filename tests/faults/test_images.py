"""Fault suite, images (issue 28): every image is normalised correctly or skipped when the pool is built, with an
event naming it.

Before: a 16-bit greyscale PNG decoded saturated (PIL's convert("RGB") clips every value above 255: a gradient of mean
127.5 decoded to 254.5, nearly white) and an image of aspect ratio 10000:1 joined the pool, then stopped the run
inside the vision processor (Qwen2-VL's smart_resize: "absolute aspect ratio must be smaller than 200").
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.faults import stand_in_run

from visplay.log.runlog import RunLog


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_16_bit_greyscale_png_keeps_its_values():
    from visplay_images.decode import DecodeLimits, decode_image

    ramp = np.linspace(0, 65535, 64 * 256).reshape(64, 256).astype(np.uint16)
    data = _png(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = np.asarray(decode_image(data, DecodeLimits(resize="none")), dtype=np.float64)
    assert out.shape == (64, 256, 3)
    assert out.mean() == pytest.approx(127.5, abs=0.1)  # saturated, it was 254.5
    assert out.min() == 0 and out.max() == 255
    expected = np.round(ramp.astype(np.float64) * 255 / 65535)
    assert np.abs(out[..., 0] - expected).max() <= 1


def test_an_8_bit_value_image_in_mode_i_is_not_rescaled():
    from visplay_images.decode import DecodeLimits, decode_image

    img = Image.fromarray(np.full((8, 8), 200, dtype=np.int32), mode="I")
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    out = np.asarray(decode_image(buf.getvalue(), DecodeLimits(resize="none")))
    assert (out == 200).all()


def test_a_float_tiff_of_values_in_0_1_keeps_its_values():
    from visplay_images.decode import DecodeLimits, decode_image

    ramp = np.linspace(0.0, 1.0, 64 * 256).reshape(64, 256).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(ramp, mode="F").save(buf, format="TIFF")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "F"
    out = np.asarray(decode_image(buf.getvalue(), DecodeLimits(resize="none")), dtype=np.float64)
    assert out.mean() == pytest.approx(127.5, abs=0.1)  # convert("RGB") truncated every value: all black
    assert np.abs(out[..., 0] - np.round(ramp * 255)).max() <= 1


def test_a_cmyk_jpeg_joins_the_pool_in_its_colour(tmp_path):
    from visplay_images.decode import DecodeLimits
    from visplay_images.sources import open_folder

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(folder / "red.jpg", quality=95)  # pure red in CMYK
    Image.new("RGB", (32, 32), (0, 0, 255)).save(folder / "blue.png")
    skipped = []
    pool = open_folder(str(folder), DecodeLimits(size=32), lambda s, why: skipped.append((s, why)))
    assert skipped == [] and len(pool) == 2
    red = next(r for r in pool if r.source.endswith("red.jpg"))
    r, g, b = np.asarray(red.image).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15


def _folder_with_a_sliver(folder):
    folder.mkdir()
    for k in range(3):
        Image.new("RGB", (32, 32), (60 * k, 90, 200 - 40 * k)).save(folder / f"img_{k}.png")
    Image.new("RGB", (10000, 1), (10, 20, 30)).save(folder / "sliver.png")
    return folder / "sliver.png"


def test_an_extreme_aspect_ratio_is_skipped_and_named(tmp_path):
    from visplay_images.decode import DecodeLimits
    from visplay_images.sources import open_folder

    sliver = _folder_with_a_sliver(tmp_path / "images")
    skipped = []
    pool = open_folder(str(tmp_path / "images"), DecodeLimits(resize="pixels", min_pixels=1024, max_pixels=4096),
                       lambda s, why: skipped.append((s, why)))
    assert len(pool) == 3
    assert len(skipped) == 1 and skipped[0][0] == str(sliver)
    assert "aspect ratio" in skipped[0][1] and "plugins.images.max_aspect_ratio=200" in skipped[0][1]
    # fixed-size resizing squares every image: nothing to skip; and the guard can be turned off
    assert len(open_folder(str(tmp_path / "images"), DecodeLimits(size=32), lambda s, why: None)) == 4
    off = DecodeLimits.from_options({"resize": "pixels", "min_pixels": 1024, "max_pixels": 4096,
                                     "max_aspect_ratio": None})
    assert len(open_folder(str(tmp_path / "images"), off, lambda s, why: None)) == 4


def test_an_extreme_aspect_ratio_is_an_event_and_the_run_goes_on(tmp_path):
    sliver = _folder_with_a_sliver(tmp_path / "images")
    db = stand_in_run(tmp_path / "run", "data.source=folder", f"data.images={tmp_path / 'images'}",
                      "plugins.images.resize=pixels", "plugins.images.min_pixels=1024",
                      "plugins.images.max_pixels=4096", stop=(0, "cold_start", 0))
    with RunLog(db, readonly=True) as log:
        events = log.rows_matching("events", kind="image_skipped")
        assert len(events) == 1 and str(sliver) in events[0]["message"] and "aspect ratio" in events[0]["message"]
        assert log.count("images") == 3


def test_max_aspect_ratio_below_one_is_refused():
    from visplay_images.options import ImagesOptions

    assert set(ImagesOptions(max_aspect_ratio=0.5).validate()) == {"max_aspect_ratio"}
    assert ImagesOptions(max_aspect_ratio=None).validate() == {}
