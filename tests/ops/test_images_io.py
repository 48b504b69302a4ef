"""jaxsm.ops.images_io against TF: DecodeJpeg/DecodeAndCropJpeg/ExtractJpegShape (every dct_method, fancy_upscaling
and ratio; 4:2:0, 4:2:2, 4:4:4, grayscale, CMYK, YCCK; truncated files), DecodePng (every colour type and bit
depth, tRNS, interlacing, gamma), DecodeGif (animations as TF composes them), DecodeBmp, DecodeImage, EncodePng,
EncodeJpeg, TF's errors, and a serving function that decodes JPEG bytes. The test images are made here: with TF's
own encoders where it has one, with Pillow, or written byte by byte (PNG, GIF, BMP) for what neither writes."""

import io
import struct
import tempfile
import warnings
import zlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

import jaxsm  # noqa: E402
from jaxsm.errors import EagerFallbackWarning, JaxsmError  # noqa: E402
from tests.tfcompare import assert_matches_tf, run_jaxsm, save_function  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::jaxsm.errors.EagerFallbackWarning")


def _s(data: bytes) -> np.ndarray:
    return np.asarray(data, dtype=object)


def _image(h: int, w: int, c: int = 3, noise: int = 30) -> np.ndarray:
    """A smooth pattern plus noise: chroma varies, so upsampling and IDCT differences show."""
    rng = np.random.default_rng([h, w, c, noise])
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 3 + yy) % 256, (yy * 5) % 256, ((xx * yy) // 7) % 256, (xx * 9) % 256], -1)[..., :c]
    return np.clip(img + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)


def _pil(img: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img, mode).save(buf, fmt, **kw)
    return buf.getvalue()


def _adobe_transform(data: bytes, transform: int | None) -> bytes:
    """Set the Adobe APP14 marker's transform (2: the components are YCCK), or drop the marker (None)."""
    i = data.find(b"Adobe") - 4  # the marker (FF EE) and its length precede the identifier
    if transform is None:
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        return data[:i] + data[i + 2 + length :]
    out = bytearray(data)
    out[i + 4 + 11] = transform
    return bytes(out)


def _cmyk_jpeg(subsampling: int) -> bytes:
    cmyk = np.random.default_rng(4).integers(0, 256, (21, 26, 4)).astype(np.uint8)
    return _pil(cmyk, "JPEG", "CMYK", quality=90, subsampling=subsampling)


JPEGS = {
    "baseline_420_q95": lambda: tf.io.encode_jpeg(_image(61, 83), quality=95).numpy(),
    "444_q75": lambda: tf.io.encode_jpeg(_image(40, 33), quality=75, chroma_downsampling=False).numpy(),
    "progressive_420_q50": lambda: tf.io.encode_jpeg(_image(37, 50), quality=50, progressive=True).numpy(),
    "optimized_q30": lambda: tf.io.encode_jpeg(_image(17, 9), quality=30, optimize_size=True).numpy(),
    "gray": lambda: tf.io.encode_jpeg(_image(29, 31, 1), quality=80).numpy(),
    "422_pillow": lambda: _pil(_image(45, 70), "JPEG", quality=85, subsampling=1),
    "tiny": lambda: tf.io.encode_jpeg(_image(3, 2), quality=90).numpy(),
    "cmyk_adobe": lambda: _cmyk_jpeg(0),
    "cmyk_no_adobe": lambda: _adobe_transform(_cmyk_jpeg(0), None),
    "cmyk_subsampled": lambda: _cmyk_jpeg(2),
    "ycck_subsampled": lambda: _adobe_transform(_cmyk_jpeg(2), 2),
}
DCT_METHODS = ("", "INTEGER_FAST", "INTEGER_ACCURATE")


def _assert_close(fn, data: bytes, atol: int) -> tuple[list, list]:
    """jaxsm's decoded pixels within ``atol`` levels of TF's (assert_matches_tf compares integers exactly)."""
    export_dir, tf_fn = save_function(fn, [_s(data)])
    expected = tf.nest.flatten(tf_fn(_s(data)))
    got = tf.nest.flatten(run_jaxsm(export_dir, [_s(data)]))
    for e, g in zip(expected, got, strict=True):
        e, g = e.numpy(), np.asarray(g)
        assert e.shape == g.shape and e.dtype == g.dtype
        np.testing.assert_allclose(g.astype(int), e.astype(int), rtol=0, atol=atol)
    return [e.numpy() for e in expected], [np.asarray(g) for g in got]


def _approximate(name: str, dct: str, fancy: bool, ratio: int) -> bool:
    """The documented non-exact case: accurate IDCT without fancy upsampling, 4:2:2 chroma, full size."""
    return name == "422_pillow" and dct == "INTEGER_ACCURATE" and not fancy and ratio == 1


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_decode_jpeg(name):
    data = JPEGS[name]()
    cmyk = name.startswith(("cmyk", "ycck"))

    def fn(s):
        out = {}
        for ch in (0, 3) if cmyk else (0, 1, 3):
            for dct in DCT_METHODS:
                for fancy in (True, False):
                    for ratio in (1, 2, 4, 8):
                        if _approximate(name, dct, fancy, ratio):
                            continue
                        key = f"c{ch}_{dct or 'default'}_fancy{fancy}_r{ratio}"
                        out[key] = tf.io.decode_jpeg(s, channels=ch, dct_method=dct, fancy_upscaling=fancy, ratio=ratio)
        out["image_f32"] = tf.io.decode_image(s, dtype=tf.float32)
        out["image_u16"] = tf.io.decode_image(s, dtype=tf.uint16)
        out["png_op"] = tf.io.decode_png(s)  # every decode op sniffs the format
        out["gif_op"] = tf.io.decode_gif(s)
        out["shape"] = tf.image.extract_jpeg_shape(s)
        out["shape64"] = tf.image.extract_jpeg_shape(s, output_type=tf.int64)
        return out

    assert_matches_tf(fn, [_s(data)], rtol=0)


def test_decode_jpeg_accurate_without_fancy_upscaling_on_422_is_close():
    """Pillow's decoder gives no accurate-IDCT 4:2:2 chroma plane at full size, so jaxsm upsamples the fast IDCT's
    there. The two IDCTs differ by a level or two on a q85 file; YCbCr->RGB multiplies a chroma error by up to
    1.772 (Cb->B), so 4 levels bound it. The luma (grayscale output) stays exact."""
    data = JPEGS["422_pillow"]()
    fn = lambda s: tf.io.decode_jpeg(s, dct_method="INTEGER_ACCURATE", fancy_upscaling=False)  # noqa: E731
    (expected,), (got,) = _assert_close(fn, data, atol=4)
    assert np.mean(got == expected) > 0.3
    gray = lambda s: tf.io.decode_jpeg(s, channels=1, dct_method="INTEGER_ACCURATE", fancy_upscaling=False)  # noqa: E731
    assert_matches_tf(gray, [_s(data)])


CROP_WINDOWS = [(0, 0, 1, 1), (1, 1, 1, 1), (5, 7, 20, 30), (16, 16, 16, 16), (17, 3, 9, 11), (0, 0, 99, 99),
                (2, 0, 10, 99), (20, 10, 9, 20), (0, 15, 5, 2)]  # fmt: skip


@pytest.mark.parametrize("name", ["baseline_420_q95", "444_q75", "progressive_420_q50", "gray", "422_pillow",
                                  "cmyk_subsampled"])  # fmt: skip
def test_decode_and_crop_jpeg(name):
    """libjpeg-turbo upsamples a crop's columns as if they were the whole image (jpeg_crop_scanline): the pixels at
    the crop's edges differ from a full decode, as TF's do."""
    data = JPEGS[name]()
    h, w = (int(v) for v in tf.image.extract_jpeg_shape(data).numpy()[:2])

    def fit(y, x, ch, cw):
        y, x = min(y, h - 1), min(x, w - 1)
        return [y, x, min(ch, h - y), min(cw, w - x)]

    def fn(s):
        out = {}
        for i, window in enumerate(CROP_WINDOWS):
            window = fit(*window)
            for dct in ("", "INTEGER_ACCURATE"):
                if name == "422_pillow" and dct:
                    continue  # see the test below
                for fancy in (True, False):
                    for ch in (0, 1) if not name.startswith("cmyk") else (0,):
                        key = f"w{i}_{dct or 'default'}_fancy{fancy}_c{ch}"
                        out[key] = tf.image.decode_and_crop_jpeg(s, window, ch, dct_method=dct, fancy_upscaling=fancy)
            half = [window[0] // 2, window[1] // 2, max(1, window[2] // 2), max(1, window[3] // 2)]
            out[f"w{i}_ratio2"] = tf.image.decode_and_crop_jpeg(s, half, ratio=2)
        return out

    assert_matches_tf(fn, [_s(data)])


def test_decode_and_crop_jpeg_accurate_on_422_is_close():
    """As above: with INTEGER_ACCURATE on 4:2:2 jaxsm takes the columns a crop's edges change from the fast IDCT's
    chroma plane, the others from the exact full decode (4 levels: see the full-size test)."""
    data = JPEGS["422_pillow"]()

    def fn(s):
        return {
            f"{i}_{fancy}": tf.image.decode_and_crop_jpeg(s, w, dct_method="INTEGER_ACCURATE", fancy_upscaling=fancy)
            for i, w in enumerate([(5, 7, 20, 30), (16, 16, 16, 16), (1, 1, 1, 1)])
            for fancy in (True, False)
        }

    _assert_close(fn, data, atol=4)


_SCALAR_STRING = [tf.TensorSpec([], tf.string)]
_PARTIAL = {  # name -> (acceptable_fraction, dct_method, fancy_upscaling)
    f"fraction{int(f * 10)}_{'accurate' if d else 'default'}": (f, d, d == "")
    for f in (1.0, 0.5, 0.0)
    for d in ("", "INTEGER_ACCURATE")
}


@pytest.fixture(scope="module")
def truncation_fns():
    """One SavedModel with a DecodeJpeg function per setting: (TF's module, jaxsm's)."""
    module = tf.Module()
    for name, (f, d, u) in _PARTIAL.items():
        fn = lambda s, f=f, d=d, u=u: tf.io.decode_jpeg(s, acceptable_fraction=f, dct_method=d, fancy_upscaling=u)  # noqa: E731
        setattr(module, name, tf.function(fn, input_signature=_SCALAR_STRING, autograph=False))
    recover = lambda s: tf.io.decode_jpeg(s, try_recover_truncated=True)  # noqa: E731
    module.recover = tf.function(recover, input_signature=_SCALAR_STRING, autograph=False)
    export_dir = tempfile.mkdtemp(prefix="jaxsm_truncated_")
    tf.saved_model.save(module, export_dir)
    return module, jaxsm.load(export_dir)


def _outcome(fns, name: str, data: bytes):
    """(TF's result or None if it raised, jaxsm's result or None if it raised)."""
    module, loaded = fns
    try:
        expected = getattr(module, name)(_s(data)).numpy()
    except tf.errors.InvalidArgumentError:
        expected = None
    try:
        got = np.asarray(getattr(loaded, name)(_s(data)))
    except JaxsmError:
        got = None
    return expected, got


@pytest.mark.parametrize("name", ["baseline_420_q95", "progressive_420_q50", "gray"])
@pytest.mark.parametrize("keep", [1.0, 0.8, 0.5, 0.05])
def test_truncated_jpeg(truncation_fns, name, keep):
    """Without try_recover_truncated libjpeg outputs the rows it can and TF blacks out the rest if at least
    acceptable_fraction of them were read (a progressive file fails: it is read whole before any row). With it, the
    rows before the end match; TF fills the rest from libjpeg-turbo 2.1 reading its inserted end marker, jaxsm
    repeats the last row. For a progressive file the whole image comes from the incomplete scans, which libjpeg-turbo
    2.1 (TF's) and 3.x (Pillow's) finish differently: only the shape is compared (jaxsm/ops/gaps.py)."""
    full = JPEGS[name]()
    data = full[: len(full) - 2] if keep == 1.0 else full[: int(len(full) * keep)]  # 1.0: the end marker is missing
    for setting in _PARTIAL:
        expected, got = _outcome(truncation_fns, setting, data)
        assert (expected is None) == (got is None), setting
        if expected is not None:
            np.testing.assert_array_equal(got, expected, err_msg=setting)
    partial, _ = _outcome(truncation_fns, "fraction0_default", data)
    expected, got = _outcome(truncation_fns, "recover", data)
    if partial is None:  # progressive: read whole before any row is output
        if expected is not None and got is not None:
            assert got.shape == expected.shape and got.dtype == expected.dtype
        return
    assert (expected is None) == (got is None)
    if expected is None:
        return
    rows = int(np.nonzero(partial.reshape(partial.shape[0], -1).any(1))[0].max(initial=-1)) + 1
    np.testing.assert_array_equal(got[:rows], expected[:rows])
    if rows:
        assert (got[rows:] == got[rows - 1]).all()


def test_extract_jpeg_shape():
    def fn(a, b, c, d):
        return [tf.image.extract_jpeg_shape(x) for x in (a, b, c, d)]

    cmyk, gray = JPEGS["cmyk_adobe"](), JPEGS["gray"]()
    prog = JPEGS["progressive_420_q50"]()
    assert_matches_tf(fn, [_s(cmyk), _s(gray), _s(prog[: len(prog) // 2]), _s(JPEGS["422_pillow"]())])


# -- PNG -------------------------------------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_rows(a: np.ndarray, bit_depth: int) -> list[bytes]:
    if bit_depth == 16:
        return [row.astype(">u2").tobytes() for row in a]
    if bit_depth == 8:
        return [row.astype(np.uint8).tobytes() for row in a]
    out = []
    for row in a:
        bits = np.unpackbits(row.reshape(-1).astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth :]
        out.append(np.packbits(bits.reshape(-1)).tobytes())
    return out


def _png(a, color_type: int, bit_depth: int, palette=None, trns: bytes | None = None, interlace: bool = False,
         chunks=()) -> bytes:  # fmt: skip
    """A PNG written byte by byte (unfiltered rows): every colour type, bit depth and chunk TF's encoder lacks."""
    a = np.asarray(a)
    a = a[..., None] if a.ndim == 2 else a
    h, w, _ = a.shape
    passes = [a[y0::dy, x0::dx] for x0, y0, dx, dy in _ADAM7] if interlace else [a]
    raw = b"".join(b"\0" + r for p in passes if p.size for r in _png_rows(p, bit_depth))
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, interlace))
    out += b"".join(_chunk(k, v) for k, v in chunks)
    if palette is not None:
        out += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _pngs(color_type: int) -> list[bytes]:
    rng = np.random.default_rng(color_type)
    out = []
    for bit_depth in {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}[color_type]:
        top = min(1 << bit_depth, 7) if color_type == 3 else 1 << bit_depth  # palette indices past its end: black
        a = rng.integers(0, top, (13, 11, _PNG_CHANNELS[color_type]))
        a[0, :3] = a[0, 0]  # gray pixels take libpng's r == g == b path
        palette = rng.integers(0, 256, (5, 3)) if color_type == 3 else None
        out += [_png(a, color_type, bit_depth, palette), _png(a, color_type, bit_depth, palette, interlace=True)]
        if color_type == 0:
            out.append(_png(a, 0, bit_depth, trns=struct.pack(">H", int(a[1, 1, 0]))))
        if color_type == 2:
            out.append(_png(a, 2, bit_depth, trns=struct.pack(">HHH", *(int(v) for v in a[1, 1]))))
            for gamma in (45455, 220000):  # libpng's gamma tables in RGB-to-gray
                out.append(_png(a, 2, bit_depth, chunks=[(b"gAMA", struct.pack(">I", gamma))]))
            out.append(_png(a, 2, bit_depth, chunks=[(b"sRGB", b"\0")]))
            if bit_depth == 16:
                out.append(_png(a, 2, 16, chunks=[(b"gAMA", struct.pack(">I", 45455)), (b"sBIT", b"\x0c\x0a\x0b")]))
        if color_type == 3:
            out.append(_png(a, 3, bit_depth, palette, trns=bytes([0, 128, 255])))  # ignored past 2**bit_depth
            out.append(_png(a, 3, bit_depth, palette, chunks=[(b"gAMA", struct.pack(">I", 45455))]))
    return out


def _png_ops(s):
    out = {}
    for ch in (0, 1, 3, 4):
        out[f"u8_c{ch}"] = tf.io.decode_png(s, channels=ch)
        out[f"u16_c{ch}"] = tf.io.decode_png(s, channels=ch, dtype=tf.uint16)
        out[f"f32_c{ch}"] = tf.io.decode_image(s, channels=ch, dtype=tf.float32)
    out["jpeg_op"] = tf.io.decode_jpeg(s)
    out["gif_op"] = tf.io.decode_gif(s)
    return out


@pytest.mark.parametrize("color_type", [0, 2, 3, 4, 6])
def test_decode_png(color_type):
    """Gray 1/2/4/8/16 bit, RGB, palette (with tRNS, indices past the palette), gray+alpha, RGBA, interlaced,
    with gAMA/sRGB/sBIT: libpng's expansions, alpha fillers and RGB-to-gray as TF configures them."""
    pngs = _pngs(color_type)
    assert_matches_tf(lambda *ss: [_png_ops(s) for s in ss], [_s(p) for p in pngs])


def test_decode_png_from_tf_encoder():
    rng = np.random.default_rng(5)
    pngs = [tf.io.encode_png(rng.integers(0, 256, (9, 17, c)).astype(np.uint8)).numpy() for c in (1, 2, 3, 4)]
    pngs += [
        tf.io.encode_png(rng.integers(0, 65536, (9, 17, c)).astype(np.uint16), compression=9).numpy() for c in (1, 4)
    ]
    assert_matches_tf(lambda *ss: [_png_ops(s) for s in ss], [_s(p) for p in pngs])


# -- GIF and BMP -----------------------------------------------------------------------------------------------


def _lzw(indices: np.ndarray, code_size: int) -> bytes:
    """GIF LZW with literal codes only (a clear code before the table would grow): valid for every decoder."""
    clear = 1 << code_size
    codes, run = [clear], 0
    for v in indices.reshape(-1):
        if run == clear - 2:
            codes.append(clear)
            run = 0
        codes.append(int(v))
        run += 1
    codes.append(clear + 1)
    acc = nbits = 0
    out = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += code_size + 1
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8
    return bytes(out + (bytes([acc]) if nbits else b""))


def _color_table(pal) -> tuple[int, bytes]:
    pal = np.asarray(pal, np.uint8)
    size = max(2, 1 << (len(pal) - 1).bit_length())
    full = np.zeros((size, 3), np.uint8)
    full[: len(pal)] = pal
    return size.bit_length() - 2, full.tobytes()


def _gif(width: int, height: int, frames: list[dict], global_palette=None, trailer: bool = True) -> bytes:
    """A GIF written byte by byte. frames: dicts with idx (h, w), left, top, pal (local), transparent, interlace."""
    out = b"GIF89a" + struct.pack("<HH", width, height)
    if global_palette is not None:
        bits, table = _color_table(global_palette)
        out += bytes([0x80 | bits, 0, 0]) + table
    else:
        out += b"\0\0\0"
    for f in frames:
        if f.get("transparent") is not None:
            out += b"\x21\xf9\x04" + bytes([1, 0, 0, f["transparent"]]) + b"\0"
        idx = np.asarray(f["idx"])
        flags, table = (0x40 if f.get("interlace") else 0), b""
        if f.get("pal") is not None:
            bits, table = _color_table(f["pal"])
            flags |= 0x80 | bits
        out += b"\x2c" + struct.pack("<HHHHB", f.get("left", 0), f.get("top", 0), idx.shape[1], idx.shape[0], flags)
        if f.get("interlace"):
            h = len(idx)
            idx = idx[list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))]
        code_size = f.get("code_size", 8)
        data = _lzw(idx, code_size)
        blocks = b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255))
        out += table + bytes([code_size]) + blocks + b"\0"
    return out + (b";" if trailer else b"")


def _gifs() -> dict[str, bytes]:
    rng = np.random.default_rng(6)
    pal, pal4 = rng.integers(0, 256, (16, 3)), rng.integers(0, 256, (4, 3))
    first = {"idx": rng.integers(0, 16, (12, 14))}
    frames = [Image.fromarray(rng.integers(0, 3, (15, 17)).astype(np.uint8) * 100) for _ in range(4)]
    frames[2] = frames[1].copy()
    frames[2].paste(0, (2, 2, 6, 7))
    pillow = io.BytesIO()
    frames[0].save(pillow, "GIF", save_all=True, append_images=frames[1:], optimize=True, disposal=2, transparency=0)
    return {
        "single": _gif(14, 12, [first], pal),
        "interlaced": _gif(14, 12, [dict(first, interlace=True)], pal),
        "local_palette": _gif(14, 12, [{"idx": rng.integers(0, 4, (12, 14)), "pal": pal4, "code_size": 2}]),
        "screen_smaller_than_frame": _gif(4, 4, [first], pal),
        # sub-rectangles, transparency, a local palette, interlacing, a frame past the canvas (clipped)
        "animation": _gif(
            14,
            12,
            [
                first,
                {"idx": rng.integers(0, 16, (5, 6)), "left": 3, "top": 4, "transparent": 2},
                {"idx": rng.integers(0, 4, (12, 14)), "pal": pal4, "transparent": 1, "interlace": True, "code_size": 2},
                {"idx": rng.integers(0, 16, (8, 9)), "left": 9, "top": 7},
            ],
            pal,
        ),  # fmt: skip
        "first_frame_partial": _gif(
            20,
            20,
            [
                {"idx": rng.integers(0, 16, (6, 7)), "left": 2, "top": 3},
                {"idx": rng.integers(0, 16, (9, 5)), "transparent": 5},
            ],
            pal,
        ),  # fmt: skip
        "no_trailer": _gif(14, 12, [first, first], pal, trailer=False),
        "pillow_optimized": pillow.getvalue(),
    }


def test_decode_gif():
    """TF composes frames on a canvas the size of the largest frame, without disposal; transparent pixels keep
    the previous frame's colour (black in the first)."""
    gifs = _gifs()

    def ops(s):
        return {
            "gif": tf.io.decode_gif(s),
            "image": tf.io.decode_image(s),
            "first": tf.io.decode_image(s, expand_animations=False),
            "u16": tf.io.decode_image(s, dtype=tf.uint16),
            "f32": tf.io.decode_image(s, dtype=tf.float32, expand_animations=False),
        }

    assert_matches_tf(lambda *ss: [ops(s) for s in ss], [_s(g) for g in gifs.values()])
    single = [gifs[k] for k in ("single", "interlaced", "local_palette", "screen_smaller_than_frame")]
    three_d = lambda *ss: [[tf.io.decode_jpeg(s), tf.io.decode_png(s, channels=3)] for s in ss]  # noqa: E731
    assert_matches_tf(three_d, [_s(g) for g in single])


def _bmp(a: np.ndarray, top_down: bool = False) -> bytes:
    h, w, c = a.shape
    row = (w * c + 3) // 4 * 4
    px = a[..., [2, 1, 0, 3][:c]] if c >= 3 else a
    rows = px if top_down else px[::-1]
    data = b"".join(np.pad(r.reshape(-1), (0, row - w * c)).astype(np.uint8).tobytes() for r in rows)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, 8 * c, 0, len(data), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54) + info + data


def test_decode_bmp():
    """TF reads BMP itself: uncompressed 8/24/32-bit rows (an 8-bit file's palette indices as gray), bottom-up
    or top-down."""
    rng = np.random.default_rng(7)
    bottom_up = [
        _pil(rng.integers(0, 256, (7, 5, 3)).astype(np.uint8), "BMP"),
        _pil(rng.integers(0, 256, (6, 3, 4)).astype(np.uint8), "BMP", "RGBA"),
        _pil(rng.integers(0, 256, (5, 6, 1)).astype(np.uint8), "BMP"),
        _bmp(rng.integers(0, 256, (3, 5, 1)).astype(np.uint8)),
    ]
    top_down = [_bmp(rng.integers(0, 256, (4, 7, c)).astype(np.uint8), top_down=True) for c in (3, 4)]

    def ops(s, dtypes=True):
        out = {f"bmp_c{c}": tf.io.decode_bmp(s, channels=c) for c in (0, 3, 4)}
        out["image"] = tf.io.decode_image(s)
        if dtypes:  # TF's BMP reader allocates height * width bytes here: negative (top-down) heights crash it
            out["u16"] = tf.io.decode_image(s, channels=4, dtype=tf.uint16)
            out["f32"] = tf.io.decode_image(s, channels=3, dtype=tf.float32)
        return out

    fn = lambda *ss: [ops(s, i < len(bottom_up)) for i, s in enumerate(ss)]  # noqa: E731
    assert_matches_tf(fn, [_s(b) for b in bottom_up + top_down])


# -- errors ----------------------------------------------------------------------------------------------------


def _bad_inputs() -> dict[str, bytes]:
    jpeg = tf.io.encode_jpeg(_image(8, 8)).numpy()
    png = tf.io.encode_png(_image(8, 8)).numpy()
    gif = _gif(4, 4, [{"idx": np.zeros((4, 4), int)}], np.zeros((4, 3)))
    return {
        "empty": b"",
        "unknown": b"hello world",
        "jpeg": jpeg,
        "jpeg_header_only": jpeg[:40],
        "png": png,
        "png_bad_crc": png[:-5] + b"xxxxx",
        "png_truncated": png[:-20],
        "png_no_iend": png[:-12],
        "gif": gif,
        "gif_two_frames": _gif(4, 4, [{"idx": np.zeros((4, 4), int)}] * 2, np.zeros((4, 3))),
        "gif_truncated": gif[:20],
        "gif_index_past_palette": _gif(4, 4, [{"idx": np.full((4, 4), 9)}], np.zeros((4, 3))),
        "gif_no_palette": _gif(4, 4, [{"idx": np.zeros((4, 4), int)}]),
        "bmp": _bmp(np.zeros((2, 3, 3), np.uint8)),
        "bmp_short": b"BM" + b"\0" * 10,
        "bmp_size_mismatch": _bmp(np.zeros((2, 3, 3), np.uint8))[:-1],
    }


class _Ops(tf.Module):
    sig = [tf.TensorSpec([], tf.string)]

    @tf.function(input_signature=sig)
    def jpeg(self, s):
        return tf.io.decode_jpeg(s)

    @tf.function(input_signature=sig)
    def image_c4(self, s):
        return tf.io.decode_image(s, channels=4)

    @tf.function(input_signature=sig)
    def png_c1(self, s):
        return tf.io.decode_png(s, channels=1)

    @tf.function(input_signature=sig)
    def gif(self, s):
        return tf.io.decode_gif(s)

    @tf.function(input_signature=sig)
    def bmp(self, s):
        return tf.io.decode_bmp(s)

    @tf.function(input_signature=sig)
    def crop(self, s):
        return tf.image.decode_and_crop_jpeg(s, [0, 0, 2, 2])

    @tf.function(input_signature=sig)
    def crop_outside(self, s):
        return tf.image.decode_and_crop_jpeg(s, [0, 0, 9, 2])

    @tf.function(input_signature=sig)
    def shape(self, s):
        return tf.image.extract_jpeg_shape(s)


def test_errors_match_tf():
    """Every decode op on every format, valid or not: jaxsm raises exactly where TF raises InvalidArgumentError
    (format sniffing, op/format restrictions, channels, invalid or truncated data), with TF's message."""
    module = _Ops()
    export_dir = tempfile.mkdtemp(prefix="jaxsm_images_")
    tf.saved_model.save(module, export_dir)
    loaded = jaxsm.load(export_dir)
    for data_name, data in _bad_inputs().items():
        for op_name in ("jpeg", "image_c4", "png_c1", "gif", "bmp", "crop", "crop_outside", "shape"):
            try:
                expected = getattr(module, op_name)(_s(data)).numpy()
                message = None
            except tf.errors.InvalidArgumentError as e:
                lines = [line.strip() for line in e.message.splitlines() if line.strip()]
                expected, message = None, [line for line in lines if not line.startswith("[[")][-1]
            try:
                got = np.asarray(getattr(loaded, op_name)(_s(data)))
            except JaxsmError as e:
                assert message is not None, f"{data_name} / {op_name}: jaxsm raised {e}, TF did not"
                assert message.split(",")[0] in str(e), f"{data_name} / {op_name}: {e} vs TF's {message}"
                continue
            assert message is None, f"{data_name} / {op_name}: TF raised {message}, jaxsm did not"
            np.testing.assert_array_equal(got, expected, err_msg=f"{data_name} / {op_name}")


def test_attribute_errors():
    data = _s(tf.io.encode_jpeg(_image(8, 8)).numpy())
    for fn, match in [
        (lambda s: tf.io.decode_jpeg(s, ratio=3), "ratio must be 1, 2, 4, or 8"),
        (lambda s: tf.io.decode_jpeg(s, dct_method="FLOAT"), "dct_method must be one of"),
        (lambda s: tf.io.decode_png(s, channels=2), "`channels` must be 0, 1, 3 or 4"),
    ]:
        export_dir, tf_fn = save_function(fn, [data])
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf_fn(data)
        with pytest.raises(JaxsmError, match=match):
            run_jaxsm(export_dir, [data])


def test_missing_pillow_says_how_to_install(monkeypatch):
    data = _s(tf.io.encode_png(_image(4, 4)).numpy())
    export_dir, _ = save_function(lambda s: tf.io.decode_png(s), [data])
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(JaxsmError, match="pip install pillow"):
        run_jaxsm(export_dir, [data])


# -- encoders --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encode_png(dtype):
    """EncodePng's bytes may differ from TF's (row filters, zlib): TF decodes both to the same pixels."""
    scale = 257 if dtype == np.uint16 else 1
    img = (_image(23, 31, 4).astype(np.uint32) * scale).astype(dtype)
    for c in (1, 2, 3, 4):
        for compression in (-1, 0, 1, 6, 9):
            x = img[..., :c]
            export_dir, _ = save_function(lambda t, z=compression: tf.io.encode_png(t, compression=z), [x])
            data = np.asarray(run_jaxsm(export_dir, [x])).item()
            assert data.startswith(b"\x89PNG")
            np.testing.assert_array_equal(tf.io.decode_png(data, dtype=tf.as_dtype(dtype)).numpy(), x)
    batch = np.stack([img, img[::-1], img[:, ::-1]]).reshape(3, 1, 23, 31, 4)
    export_dir, _ = save_function(lambda t: tf.io.encode_png(t), [batch])
    out = np.asarray(run_jaxsm(export_dir, [batch]))
    assert out.shape == (3, 1) and out.dtype == object
    for i in range(3):
        np.testing.assert_array_equal(tf.io.decode_png(out[i, 0], dtype=tf.as_dtype(dtype)).numpy(), batch[i, 0])


def test_encode_jpeg_gives_tfs_bytes():
    """libjpeg-turbo through Pillow with TF's settings: TF's quality scaling (forced baseline tables), simple
    progression, Huffman optimisation, 4:4:4 when chroma_downsampling is off, TF's JFIF density, the XMP APP1
    marker."""

    def fn(x):
        out = {f"q{q}": tf.io.encode_jpeg(x, quality=q) for q in (0, 10, 50, 75, 95, 100)}
        out["progressive"] = tf.io.encode_jpeg(x, progressive=True)
        out["optimize"] = tf.io.encode_jpeg(x, optimize_size=True, quality=80)
        out["444"] = tf.io.encode_jpeg(x, chroma_downsampling=False)
        out["cm"] = tf.io.encode_jpeg(x, density_unit="cm", x_density=37, y_density=70000)
        out["xmp"] = tf.io.encode_jpeg(x, xmp_metadata="<x:xmpmeta>hi</x:xmpmeta>")
        out["rgb"] = tf.io.encode_jpeg(x, format="rgb")
        out["gray"] = tf.io.encode_jpeg(x[..., :1], format="grayscale", quality=60)
        out["gray_auto"] = tf.io.encode_jpeg(x[..., 1:2], progressive=True)
        out["variable_quality"] = tf.raw_ops.EncodeJpegVariableQuality(images=x, quality=33)
        return out

    for img in (_image(23, 31, noise=0), np.random.default_rng(8).integers(0, 256, (23, 31, 3)).astype(np.uint8)):
        assert_matches_tf(fn, [img])


def test_encode_errors():
    img = np.zeros((4, 4, 2), np.uint8)
    for fn, match in [
        (lambda x: tf.io.encode_jpeg(x), "image must have 1 or 3 channels"),
        (lambda x: tf.io.encode_jpeg(x[..., :1], format="rgb"), "format rgb expects 3 channels"),
    ]:
        export_dir, tf_fn = save_function(fn, [img])
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf_fn(img)
        with pytest.raises(JaxsmError, match=match):
            run_jaxsm(export_dir, [img])


# -- in a model ------------------------------------------------------------------------------------------------


def test_serving_signature_decodes_jpeg_bytes():
    """A TF Serving export: the signature takes encoded JPEGs ([None] strings), decodes, resizes to 32x32 and
    applies a dense layer. The call runs op by op on the host (string inputs) and matches TF."""
    rng = np.random.default_rng(8)

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(size=(32 * 32 * 3, 5)).astype(np.float32) * 0.01)
            self.b = tf.Variable(rng.normal(size=(5,)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, images):
            n = tf.shape(images)[0]
            pixels = tf.TensorArray(tf.float32, size=n, element_shape=[32, 32, 3])
            for i in tf.range(n):
                img = tf.io.decode_jpeg(images[i], channels=3)
                pixels = pixels.write(i, tf.image.resize(tf.cast(img, tf.float32) / 255.0, [32, 32]))
            x = tf.reshape(pixels.stack(), [-1, 32 * 32 * 3])
            return {"logits": tf.matmul(x, self.w) + self.b}

    module = Serving()
    export_dir = tempfile.mkdtemp(prefix="jaxsm_serving_")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    batch = np.array(
        [tf.io.encode_jpeg(_image(50, 70)).numpy(), tf.io.encode_jpeg(_image(41, 29), quality=80).numpy()], object
    )
    expected = module.serve(batch)["logits"].numpy()
    loaded = jaxsm.load(export_dir)
    with pytest.warns(EagerFallbackWarning):
        got = loaded.signatures["serving_default"](images=batch)
    np.testing.assert_allclose(np.asarray(got["logits"]), expected, rtol=1e-5, atol=1e-5)


def test_constant_image_folds_and_compiles():
    """An image known at trace time (a constant) is decoded while tracing: the function compiles without falling
    back to op-by-op execution."""
    png = tf.io.encode_png(_image(6, 5)).numpy()

    def fn(x):
        return tf.cast(tf.io.decode_png(tf.constant(png)), tf.float32) * x

    with warnings.catch_warnings():
        warnings.simplefilter("error", EagerFallbackWarning)
        assert_matches_tf(fn, [np.float32(0.5)])


# -- WebP ------------------------------------------------------------------------------------------------------


def _webp_or_skip():
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow was built without WebP support")


def _webp_cases() -> dict[str, bytes]:
    frames = [Image.fromarray(_image(6, 5, 4, noise=n)) for n in (10, 60, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)
    return {
        "rgb-lossless": _pil(_image(7, 9), "WEBP", lossless=True),
        "rgb-lossy": _pil(_image(16, 11), "WEBP", quality=50),
        "rgba-lossless": _pil(_image(5, 4, 4), "WEBP", lossless=True),
        "rgba-lossy": _pil(_image(9, 8, 4), "WEBP", quality=80),
        "animation": buf.getvalue(),
    }


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", ["rgb-lossless", "rgb-lossy", "rgba-lossless", "rgba-lossy", "animation"])
def test_decode_webp(case, jit):
    _webp_or_skip()
    data = _webp_cases()[case]
    channels = 3 if case.startswith("rgb-") else 4
    for c in (0, channels):
        assert_matches_tf(lambda x, c=c: tf.io.decode_webp(x, channels=c), [_s(data)], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("case", ["rgb-lossy", "rgba-lossless", "animation"])
def test_other_decoders_take_webp(case, jit):
    """TF's decode ops all sniff WebP: 4-D frames (DecodeAndCropJpeg does not crop), except DecodeImage with
    expand_animations=False (the first frame)."""
    _webp_or_skip()

    def fn(x):
        out = {
            "image": tf.io.decode_image(x),
            "first": tf.io.decode_image(x, expand_animations=False),
            "png": tf.io.decode_png(x),
            "jpeg": tf.io.decode_jpeg(x),
            "crop": tf.image.decode_and_crop_jpeg(x, [0, 0, 1, 1]),
        }
        if case == "rgb-lossy":
            out["gif"] = tf.io.decode_gif(x)
        return out

    assert_matches_tf(fn, [_s(_webp_cases()[case])], jit=jit)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_webp_takes_png_and_jpeg(fmt, jit):
    assert_matches_tf(lambda x: tf.io.decode_webp(x), [_s(_pil(_image(5, 6), fmt))], jit=jit)


_WEBP_ERRORS = {
    "channels": lambda x: tf.io.decode_webp(x, channels=4),
    "one-channel": lambda x: tf.io.decode_image(x, channels=1),
    "float": lambda x: tf.io.decode_image(x, dtype=tf.float32),
    "uint16-png": lambda x: tf.io.decode_png(x, dtype=tf.uint16),
    "bad-header": lambda x: tf.io.decode_image(tf.strings.substr(x, 0, 12) + b"junk" * 8),
    "gif": lambda x: tf.io.decode_webp(tf.strings.join([tf.strings.substr(x, 0, 0), _pil(_image(2, 2), "GIF")])),
}


@pytest.mark.parametrize("case", list(_WEBP_ERRORS))
def test_decode_webp_errors(case):
    _webp_or_skip()
    data = _webp_cases()["rgb-lossy"]
    fn = _WEBP_ERRORS[case]
    export_dir, tf_fn = save_function(fn, [_s(data)])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf_fn(_s(data))
    with pytest.raises(JaxsmError, match="channels|WebP|DecodeWebP"):
        run_jaxsm(export_dir, [_s(data)])
