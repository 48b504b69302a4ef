"""Image decoding and encoding on the host: DecodeJpeg, DecodePng, DecodeGif, DecodeBmp, DecodeWebP, DecodeImage,
DecodeAndCropJpeg, ExtractJpegShape, EncodePng, EncodeJpeg and EncodeJpegVariableQuality, with TF's semantics
(tensorflow/core/kernels/image/decode_image_op.cc and the jpeg/png/gif libraries under tensorflow/core/lib).

The encoded images are string tensors, so these ops run on the host with concrete values like the string ops
(jaxsm/ops/strings.py): a function fed encoded images runs op by op (EagerFallbackWarning) and the decoded
pixels are NumPy arrays. Pillow (``pip install pillow``, imported when an op first runs) provides libjpeg-turbo,
zlib inflation with PNG row filters and GIF's LZW; everything TF does on top of those libraries is re-done here.

As in TF, every decode op sniffs the format from the magic bytes: DecodeJpeg and DecodePng decode PNG, JPEG and
single-frame GIF alike, DecodeGif returns ``[frames, h, w, 3]`` for all of them, DecodeBmp only takes BMP and
DecodeAndCropJpeg only JPEG. ``channels`` 0 keeps what the file stores. WebP is the exception: every op decodes it
to ``[frames, h, w, c]`` uint8 (DecodeImage with ``expand_animations=False``: the first frame), with libwebp
(Pillow's, as TF's), bit-identical for lossless, lossy and animated files.

Exactness against TF 2.21 (tests/ops/test_images_io.py):

* JPEG: bit-identical for baseline and progressive files, 4:2:0, 4:2:2 and 4:4:4 subsampling, grayscale, CMYK
  and YCCK (with and without an Adobe marker), ``ratio`` 1/2/4/8 and crop windows, for TF's default ``dct_method``
  (``""``, which TF maps to libjpeg's JDCT_IFAST like ``INTEGER_FAST``) and ``INTEGER_ACCURATE`` (JDCT_ISLOW),
  with ``fancy_upscaling`` on or off. Pillow's decoder offers ISLOW with fancy upsampling and (its "draft" mode)
  IFAST without; for the other combinations, and for crops (libjpeg-turbo upsamples a crop's columns as if they
  were the whole image), jaxsm decodes the component planes with Pillow, upsamples them with libjpeg-turbo's
  integer filters (jdsample.c) and converts YCbCr/YCCK with its tables (jdcolor.c). The planes come out of
  Pillow's box-upsampling IFAST decode, or, for ISLOW, from a decode at a smaller scale where libjpeg computes the
  chroma unscaled (4:2:0 at ratio 1) -- IDCTs smaller than 8x8 do not depend on ``dct_method``. Not bit-exact
  where neither works: ``INTEGER_ACCURATE`` with ``fancy_upscaling=False`` (or with a crop: its edge columns) on
  other subsampling (4:2:2) at ratio 1 takes the IFAST chroma plane (2 levels off in the tests; gaps.py).
* Truncated JPEGs: without ``try_recover_truncated`` the rows libjpeg decodes before the data ends are exact and
  the rest is black, subject to ``acceptable_fraction`` as in TF. With it, TF's rows past the end come from
  libjpeg-turbo 2.1 (TF's build) reading the end markers TF inserts, and are not reproduced: jaxsm repeats the last
  decoded row there. A truncated progressive file is decoded whole from its incomplete scans, which libjpeg-turbo
  2.1 and Pillow's 3.x finish differently: jaxsm's pixels can differ anywhere, and it can fail where TF does not.
* PNG (1/2/4/8/16 bit, gray, gray+alpha, RGB, RGBA, palette, tRNS, interlaced), GIF (frames composed as TF does:
  canvas of the largest frame, no disposal, transparent pixels keep the previous frame) and BMP (TF's own
  reader) are exact, including libpng's conversions TF asks for: 0.299/0.587 RGB-to-gray with libpng's integer
  coefficients (and its gamma tables when the file has gAMA or sRGB), alpha filler ``2**bit_depth - 1``.
* EncodeJpeg and EncodeJpegVariableQuality use libjpeg-turbo through Pillow with TF's settings (quality scaling
  with baseline tables, simple progression, Huffman optimisation, 1x1 chroma sampling when chroma_downsampling is
  off, TF's JFIF density, XMP in APP1): the bytes equal TF's in the tests (TF's libjpeg-turbo 2.1.4, Pillow's
  3.2). EncodePng writes its own PNG (a libpng-like row-filter choice, zlib): the bytes may differ from TF's, the
  decoded pixels are the same.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from typing import Any

import numpy as np

from jaxsm.ops.registry import op
from jaxsm.ops.strings import _bytes_array, _strings


class _Invalid(Exception):
    """Invalid image data; the message is TF's."""


def _pil(ctx):
    try:
        from PIL import Image
    except ImportError:
        raise ctx.error(f"{ctx.node.op} needs Pillow to decode and encode images: pip install pillow") from None
    return Image


def _contents(ctx, x, what: str = "`contents`") -> bytes:
    s = _strings(ctx, x, "the encoded image")
    if s.ndim != 0:
        raise ctx.error(f"{what} must be scalar but got shape {list(s.shape)}")
    return s.reshape(()).item()


def _magic(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _convert(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """TF's conversion of 8-bit decoded pixels to the requested dtype (decode_image_op.cc)."""
    if dtype == np.uint8:
        return img
    if dtype == np.uint16:
        return img.astype(np.uint16) * np.uint16(256)
    return img.astype(np.float32) * np.float32(1.0 / 255)


# -- JPEG ------------------------------------------------------------------------------------------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class _JpegInfo:
    """What libjpeg learns from the markers up to the first SOS (jdmarker.c, default_decompress_parms)."""

    def __init__(self, data: bytes):
        self.width = self.height = 0
        self.comps: list[tuple[int, int, int]] = []  # (id, h, v)
        self.precision = 8
        self.progressive = False
        self.jfif = False
        self.adobe: int | None = None  # the transform of an Adobe APP14 marker
        self.lossless = False
        self.sos_comps = 0
        self.sos_end = -1
        pos, n = 2, len(data)
        while pos < n:
            if data[pos] != 0xFF:
                raise _Invalid("no marker")
            while pos < n and data[pos] == 0xFF:
                pos += 1
            if pos >= n:
                break
            m = data[pos]
            pos += 1
            if 0xD0 <= m <= 0xD7 or m == 0x01:
                continue
            if m == 0xD9:
                raise _Invalid("no image")
            if pos + 2 > n:
                break
            length = struct.unpack(">H", data[pos : pos + 2])[0]
            if length < 2:
                raise _Invalid("bad marker length")
            seg = data[pos + 2 : pos + length]
            if m in _SOF:
                if len(seg) < 6:
                    break
                self.precision = seg[0]
                self.height, self.width, nc = struct.unpack(">HHB", seg[1:6])
                self.progressive = m in (0xC2, 0xC6, 0xCA, 0xCE)
                self.lossless = m in (0xC3, 0xC7, 0xCB, 0xCF)
                for i in range(nc):
                    c = seg[6 + 3 * i : 9 + 3 * i]
                    if len(c) < 3:
                        raise _Invalid("bad SOF")
                    self.comps.append((c[0], c[1] >> 4, c[1] & 15))
            elif m == 0xE0 and len(seg) >= 14 and seg[:5] == b"JFIF\0":
                self.jfif = True
            elif m == 0xEE and len(seg) >= 12 and seg[:5] == b"Adobe":
                self.adobe = seg[11]
            elif m == 0xDA:
                if not self.comps:
                    raise _Invalid("SOS before SOF")
                self.sos_comps = seg[0] if seg else 0
                self.sos_end = pos + length
                return
            pos += length
        self.sos_end = -1  # the header ends before the first scan

    @property
    def complete_header(self) -> bool:
        return self.sos_end >= 0

    @property
    def multiscan(self) -> bool:
        """libjpeg's has_multiple_scans: jpeg_start_decompress reads the whole file first."""
        return self.progressive or self.sos_comps < len(self.comps)

    @property
    def colorspace(self) -> str:
        nc = len(self.comps)
        if nc == 1:
            return "gray"
        if nc == 3:
            if self.jfif:
                return "ycc"
            if self.adobe is not None:
                return "rgb" if self.adobe == 0 else "ycc"
            ids = tuple(c[0] for c in self.comps)
            return "rgb" if ids == (82, 71, 66) else "ycc"
        if nc == 4:
            if self.adobe is None or self.adobe == 0:
                return "cmyk"
            return "ycck"
        return "unknown"

    def validate(self) -> None:
        if not self.comps or self.width <= 0 or self.height <= 0:
            raise _Invalid("empty image")
        if self.precision != 8:
            raise _Invalid("unsupported precision")
        if self.lossless:  # libjpeg-turbo decodes lossless JPEG from 3.0 (Pillow's); TF's 2.1 cannot
            raise _Invalid("lossless JPEG")
        if any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in self.comps):
            raise _Invalid("bad sampling factors")


def _geometry(info: _JpegInfo, ratio: int, fancy: bool) -> dict:
    """libjpeg-turbo's output size, per-component IDCT size and upsampling method (jdmaster.c, jdsample.c)."""
    min_size = 8 // ratio
    maxh = max(h for _, h, _ in info.comps)
    maxv = max(v for _, _, v in info.comps)
    out_w = -(-info.width * min_size // 8)
    out_h = -(-info.height * min_size // 8)
    do_fancy = fancy and min_size > 1
    comps = []
    for _, h, v in info.comps:
        size = min_size
        while size < 8 and (maxh * min_size) % (h * size * 2) == 0 and (maxv * min_size) % (v * size * 2) == 0:
            size *= 2
        dw = -(-info.width * h * size // (maxh * 8))
        dh = -(-info.height * v * size // (maxv * 8))
        h_in, v_in = h * size // min_size, v * size // min_size
        if maxh % h_in or maxv % v_in:
            raise _Invalid("fractional sampling")
        comps.append({"size": size, "dw": dw, "dh": dh, "hexp": maxh // h_in, "vexp": maxv // v_in})
    for c in comps:
        c["method"] = _method(c["hexp"], c["vexp"], c["dw"], do_fancy)
    return {
        "min_size": min_size,
        "maxh": maxh,
        "maxv": maxv,
        "out_w": out_w,
        "out_h": out_h,
        "comps": comps,
        "do_fancy": do_fancy,
    }


def _method(hexp: int, vexp: int, dw: int, do_fancy: bool) -> str:
    if hexp == 1 and vexp == 1:
        return "full"
    if hexp == 2 and vexp == 1:
        return "h2v1_fancy" if do_fancy and dw > 2 else "box"
    if hexp == 1 and vexp == 2 and do_fancy:
        return "h1v2_fancy"
    if hexp == 2 and vexp == 2:
        return "h2v2_fancy" if do_fancy and dw > 2 else "box"
    return "box"


def _edge(p: np.ndarray, axis: int, step: int) -> np.ndarray:
    """``p`` shifted by one along ``axis`` (step -1: the previous element), repeating the edge element."""
    if axis == 0:
        return np.concatenate([p[:1], p[:-1]]) if step < 0 else np.concatenate([p[1:], p[-1:]])
    return np.concatenate([p[:, :1], p[:, :-1]], 1) if step < 0 else np.concatenate([p[:, 1:], p[:, -1:]], 1)


def _upsample(p: np.ndarray, method: str, hexp: int, vexp: int) -> np.ndarray:
    """libjpeg-turbo's upsamplers on one downsampled plane (int32 in, int32 out)."""
    if method == "full":
        return p
    if method == "box":
        return np.repeat(np.repeat(p, vexp, 0), hexp, 1)
    h, w = p.shape
    if method == "h2v1_fancy":
        out = np.empty((h, 2 * w), np.int32)
        out[:, 0::2] = (3 * p + _edge(p, 1, -1) + 1) >> 2
        out[:, 1::2] = (3 * p + _edge(p, 1, 1) + 2) >> 2
        return out
    if method == "h1v2_fancy":
        out = np.empty((2 * h, w), np.int32)
        out[0::2] = (3 * p + _edge(p, 0, -1) + 1) >> 2
        out[1::2] = (3 * p + _edge(p, 0, 1) + 2) >> 2
        return out
    out = np.empty((2 * h, 2 * w), np.int32)  # h2v2_fancy
    for v, other in ((0, _edge(p, 0, -1)), (1, _edge(p, 0, 1))):
        cs = 3 * p + other
        out[v::2, 0::2] = (3 * cs + _edge(cs, 1, -1) + 8) >> 4
        out[v::2, 1::2] = (3 * cs + _edge(cs, 1, 1) + 7) >> 4
    return out


@functools.cache
def _ycc_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """jdcolor.c build_ycc_rgb_table: Cr->R, Cb->B, and (Cb, Cr)->G as one 256x256 table."""
    one_half, x = 1 << 15, np.arange(256, dtype=np.int64) - 128

    def fix(v: float) -> int:
        return int(v * (1 << 16) + 0.5)

    cr_r = (fix(1.40200) * x + one_half) >> 16
    cb_b = (fix(1.77200) * x + one_half) >> 16
    cr_g = -fix(0.71414) * x
    cb_g = -fix(0.34414) * x + one_half
    g = (cb_g[:, None] + cr_g[None, :]) >> 16
    return cr_r.astype(np.int16), cb_b.astype(np.int16), g.astype(np.int16).reshape(-1)


def _ycc_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    cr_r, cb_b, g = _ycc_tables()
    y = y.astype(np.int16)
    cb, cr = cb.astype(np.intp), cr.astype(np.intp)
    out = np.empty(y.shape + (3,), np.uint8)
    out[..., 0] = np.clip(y + cr_r[cr], 0, 255)
    out[..., 1] = np.clip(y + g[cb * 256 + cr], 0, 255)
    out[..., 2] = np.clip(y + cb_b[cb], 0, 255)
    return out


class _JpegDecoder:
    """One JPEG decode with TF's UncompressFlags, on top of Pillow's libjpeg-turbo decoder."""

    def __init__(
        self,
        Image,
        data: bytes,
        channels: int,
        ratio: int,
        fancy: bool,
        fast: bool,
        recover: bool,
        fraction: float,
        crop: tuple[int, int, int, int] | None,
    ):
        self.Image, self.data = Image, data
        self.ratio, self.fancy, self.fast, self.recover, self.fraction = ratio, fancy, fast, recover, fraction
        self.crop = crop
        info = _JpegInfo(data)
        if not info.complete_header:
            raise _Invalid("incomplete header")
        info.validate()
        self.info = info
        self.channels = channels or min(len(info.comps), 3)
        if self.channels not in (1, 3):
            raise _Invalid("components")
        cs = info.colorspace
        if self.channels == 1 and cs not in ("gray", "ycc", "rgb"):
            raise _Invalid("no grayscale conversion")
        self.out_space = (
            "cmyk" if self.channels == 3 and cs in ("cmyk", "ycck") else ("L" if self.channels == 1 else "RGB")
        )
        self.geo = _geometry(info, ratio, fancy)
        if self.geo["out_h"] * self.geo["out_w"] * len(info.comps) >= 1 << 29:
            raise _Invalid("image too large")

    # -- Pillow -----------------------------------------------------------------------------------------------
    def _pillow(
        self, mode: str, ratio: int, draft: bool, data: bytes, fill: int = 0, jpegmode: str = ""
    ) -> tuple[np.ndarray, bool]:
        """Decode ``data`` with Pillow's libjpeg-turbo at 1/``ratio`` (``draft``: IFAST without fancy upsampling,
        else ISLOW with it; ``jpegmode`` overrides the file's colour space). Returns (pixels, complete); rows
        libjpeg did not output (truncated data) keep ``fill``."""
        Image = self.Image
        size = (-(-self.info.width // ratio), -(-self.info.height // ratio))
        im = Image.new(mode, size, (fill,) * Image.getmodebands(mode))
        decoder = Image._getdecoder(mode, "jpeg", (mode, jpegmode, ratio, int(draft)))
        try:
            decoder.setimage(im.im, (0, 0) + size)
            consumed, err = decoder.decode(data)
        finally:
            decoder.cleanup()
        if err < 0:
            raise _Invalid(f"libjpeg error {err}")
        return np.asarray(im).reshape(size[1], size[0], -1), consumed < 0

    def _raw_mode(self) -> tuple[str, str]:
        """Pillow (mode, jpegmode) giving the file's components without colour conversion."""
        return {"ycc": ("YCbCr", ""), "rgb": ("RGB", ""), "cmyk": ("CMYK", ""), "ycck": ("CMYK", "CMYK")}[
            self.info.colorspace
        ]

    # -- pixels -----------------------------------------------------------------------------------------------
    def _needed(self) -> list[int]:
        if self.out_space == "L" and self.info.colorspace in ("gray", "ycc"):
            return [0]
        return list(range(len(self.info.comps)))

    def _out_mode(self) -> str:
        return {"L": "L", "RGB": "RGB", "cmyk": "CMYK"}[self.out_space]

    def _crop_fancy(self) -> bool:
        """Whether a crop changes fancy-upsampled pixels (libjpeg-turbo upsamples the cropped columns alone)."""
        if self.crop is None or self.crop[3] == self.geo["out_w"]:
            return False
        return any("fancy" in self.geo["comps"][c]["method"] for c in self._needed())

    def pixels(self, data: bytes) -> tuple[np.ndarray, bool]:
        """The decoded image (CMYK before TF's conversion), cropped, and whether libjpeg read it whole."""
        geo, needed = self.geo, self._needed()
        upsampled = any(geo["comps"][c]["method"] != "full" for c in needed)
        direct_ok = not upsampled or (self.fancy != self.fast)
        if self.info.colorspace == "gray" or (direct_ok and not self._crop_fancy()) or self.out_space == "L":
            # Pillow's two settings: ISLOW with fancy upsampling, IFAST ("draft") without. Where the other
            # setting does not matter (no upsampling) pick the right IDCT; a grayscale output of a subsampled
            # RGB-coded file in a combination Pillow lacks gets the right upsampling with the other IDCT.
            draft = self.fast if direct_ok else not self.fancy
            img, complete = self._pillow(self._out_mode(), self.ratio, draft, data)
            return self._cropped(img), complete
        return self._planes(data)

    def _cropped(self, img: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return img
        y, x, h, w = self.crop
        return img[y : y + h, x : x + w]

    def _planes(self, data: bytes) -> tuple[np.ndarray, bool]:
        """Decode the component planes with the right IDCT, then upsample and convert them like libjpeg."""
        geo, cs = self.geo, self.info.colorspace
        mode, jpegmode = self._raw_mode()
        full, complete = self._pillow(mode, self.ratio, self.fast, data, jpegmode=jpegmode)
        if not self.fast and cs == "ycc":
            # Y from a grayscale decode: it needs no upsampling, so truncated data gives the rows TF's decode
            # without fancy upsampling outputs (the fancy upsampler's context rows delay the output).
            luma, _ = self._pillow("L", self.ratio, False, data)
            full = np.concatenate([luma, full[..., 1:]], -1)
        planes, exact = [], True
        for c, comp in enumerate(geo["comps"]):
            if comp["method"] == "full":
                planes.append(full[..., c].astype(np.int32))
            elif self.fast:  # Pillow's draft mode box-upsamples: every hexp-th column is the plane
                planes.append(full[:: comp["vexp"], :: comp["hexp"], c][: comp["dh"], : comp["dw"]].astype(np.int32))
            else:
                plane, ok = self._islow_plane(c, comp, data)
                planes.append(plane)
                exact = exact and ok
        out_w = geo["out_w"]
        x0, width = 0, out_w
        if self.crop is not None and self.crop[3] != out_w:
            align = geo["min_size"] * geo["maxh"]
            x0 = self.crop[1] // align * align
            width = self.crop[1] + self.crop[3] - x0
        chans, edges = [], np.zeros(width, bool)
        for comp, p in zip(geo["comps"], planes, strict=True):
            method = comp["method"]
            if method == "full":
                chans.append(p[:, x0 : x0 + width])
                continue
            c0 = x0 // comp["hexp"]
            dw = -(-width // comp["hexp"])
            if dw < 2 <= comp["dw"]:  # jpeg_crop_scanline re-selects the upsampler
                method = _method(comp["hexp"], comp["vexp"], dw, geo["do_fancy"])
                edges[:] = True
            elif method in ("h2v1_fancy", "h2v2_fancy") and width != out_w:
                edges[0] |= c0 > 0  # the cropped columns are upsampled as if they were the whole image
                if c0 + dw < comp["dw"] and 2 * dw - 1 < width:
                    edges[2 * dw - 1] = True
            up = _upsample(p[:, c0 : c0 + dw], method, comp["hexp"], comp["vexp"])
            chans.append(up[: geo["out_h"], :width])
        if cs in ("ycc", "ycck"):
            img = _ycc_to_rgb(chans[0], chans[1], chans[2])
            if cs == "ycck":  # jdcolor.c ycck_cmyk_convert
                img = np.concatenate([255 - img, np.clip(chans[3], 0, 255)[..., None].astype(np.uint8)], -1)
        else:
            img = np.stack(chans, -1).astype(np.uint8)
        if self.crop is not None:
            y, x, h, w = self.crop
            img, edges = img[y : y + h, x - x0 : x - x0 + w], edges[x - x0 : x - x0 + w]
        if not exact and self.fancy:
            # The ISLOW chroma planes were approximated: Pillow's ISLOW+fancy decode is exact away from the
            # columns the crop's edges change.
            direct, _ = self._pillow(self._out_mode(), self.ratio, False, data)
            img = np.where(edges[None, :, None], img, self._cropped(direct))
        return img, complete

    def _islow_plane(self, c: int, comp: dict, data: bytes) -> tuple[np.ndarray, bool]:
        """An ISLOW component plane and whether it is exact. libjpeg computes it unscaled in a decode at a smaller
        scale where the other components' IDCT shrinks instead (4:2:0 at ratio 1); scaled IDCTs (size < 8) do
        not depend on the DCT method. Otherwise the IFAST plane (not bit-exact)."""
        mode, jpegmode = self._raw_mode()
        for r2 in (2 * self.ratio, 4 * self.ratio, 8 * self.ratio):
            if r2 > 8:
                break
            c2 = _geometry(self.info, r2, False)["comps"][c]
            if c2["size"] == comp["size"] and c2["method"] == "full":
                img, _ = self._pillow(mode, r2, False, data, jpegmode=jpegmode)
                return img[: comp["dh"], : comp["dw"], c].astype(np.int32), True
        box, _ = self._pillow(mode, self.ratio, True, data, jpegmode=jpegmode)
        plane = box[:: comp["vexp"], :: comp["hexp"], c][: comp["dh"], : comp["dw"]].astype(np.int32)
        return plane, comp["size"] < 8

    # -- TF's Uncompress --------------------------------------------------------------------------------------
    def decode(self) -> np.ndarray:
        data, info = self.data, self.info
        if self.crop is not None:
            y, x, h, w = self.crop
            ow, oh = self.geo["out_w"], self.geo["out_h"]
            if not (w > 0 and h > 0 and x >= 0 and y >= 0 and y + h <= oh and x + w <= ow):
                raise _Invalid("crop window")
        if self.recover and info.multiscan:
            # TF's source manager inserts an end marker each time libjpeg asks for data past the end (a marker
            # segment cut short reads them as its bytes); a multi-scan file is read whole before any row is output,
            # so the markers only end the coefficient data, as they do here.
            img, complete = self.pixels(data + b"\xff\xd9" * 32769)
            if not complete:
                raise _Invalid("truncated")
            return self._cmyk(img)
        img, complete = self.pixels(data)
        if complete:
            return self._cmyk(img)
        # The data ends early: libjpeg outputs the rows it can, then TF checks acceptable_fraction.
        if info.multiscan:
            raise _Invalid("truncated")
        rows = self._rows_read(data)
        height = img.shape[0]
        if self.crop is not None:
            rows = min(max(rows - self.crop[0], 0), height)
        if not self.recover and np.float32(rows) / np.float32(height) < min(np.float32(1), np.float32(self.fraction)):
            raise _Invalid("truncated")
        img = img.copy()
        if self.recover:  # TF repeats the line above where libjpeg stops outputting rows
            img[rows:] = img[rows - 1] if rows else 0
        else:
            img[rows:] = 0
        return self._cmyk(img)

    def _rows_read(self, data: bytes) -> int:
        """How many rows libjpeg outputs from truncated data with TF's upsampling (which sets how far the output
        lags the entropy decoder); the IDCT method does not matter."""
        a, _ = self._pillow(self._out_mode(), self.ratio, not self.fancy, data, fill=0)
        b, _ = self._pillow(self._out_mode(), self.ratio, not self.fancy, data, fill=255)
        differ = np.nonzero((a != b).reshape(a.shape[0], -1).any(1))[0]
        return int(differ[0]) if differ.size else a.shape[0]

    def _cmyk(self, img: np.ndarray) -> np.ndarray:
        if self.out_space != "cmyk":
            return img
        c, m, y, k = (img[..., i].astype(np.int32) for i in range(4))
        if self.info.adobe is not None:
            rgb = [k * c // 255, k * m // 255, k * y // 255]
        else:
            rgb = [(255 - k) * (255 - c) // 255, (255 - k) * (255 - m) // 255, (255 - k) * (255 - y) // 255]
        return np.stack(rgb, -1).astype(np.uint8)


def _jpeg_shape(data: bytes) -> tuple[int, int, int]:
    """jpeg::GetImageInfo: the output size and components after jpeg_start_decompress with default settings."""
    info = _JpegInfo(data)
    if not info.complete_header:
        raise _Invalid("incomplete header")
    info.validate()
    _geometry(info, 1, True)
    return info.height, info.width, len(info.comps)


# -- PNG -------------------------------------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_RGB_TO_GRAY = (9797, 19234)  # png_set_rgb_to_gray(png_ptr, 1, 0.299, 0.587) in libpng's 1/32768 units
_INIT_ERROR = "Invalid PNG. Failed to initialize decoder."


class _Png:
    """The chunks of a PNG file as libpng reads them (critical chunks checked, ancillary ones with a bad CRC
    dropped)."""

    def __init__(self, data: bytes):
        self.palette = self.trns = None
        self.gamma = 0
        self.srgb = False
        self.sbit = b""
        self.error = ""  # a data error found after the first IDAT (TF reports it after its op-type checks)
        idat = []
        pos, n, first, ended = 8, len(data), True, False
        while pos + 8 <= n:
            length = struct.unpack(">I", data[pos : pos + 4])[0]
            ctype = data[pos + 4 : pos + 8]
            body = data[pos + 8 : pos + 8 + length]
            crc = data[pos + 8 + length : pos + 12 + length]
            if length > 0x7FFFFFFF or len(crc) < 4:
                if not idat and ctype != b"IDAT":  # png_read_info stops at the first IDAT's header
                    raise _Invalid(_INIT_ERROR)
                self.error = "truncated"
                idat.append(b"")
                break
            critical = not (ctype[0] & 0x20)
            good = struct.unpack(">I", crc)[0] == zlib.crc32(ctype + body) & 0xFFFFFFFF
            pos += 12 + length
            if first:
                if ctype != b"IHDR" or length != 13 or not good:
                    raise _Invalid(_INIT_ERROR)
                self._ihdr(body)
                first = False
                continue
            if not good:
                if critical:
                    if not idat:
                        raise _Invalid(_INIT_ERROR)
                    self.error = "crc"
                    break
                continue
            if ctype == b"IDAT":
                if not idat and self.color_type == 3 and self.palette is None:
                    raise _Invalid(_INIT_ERROR)
                idat.append(body)
            elif ctype == b"IEND":
                ended = True
                break
            elif ctype == b"PLTE":
                valid = length % 3 == 0 and 0 < length <= 768
                if self.color_type == 3 and not valid and not idat:
                    raise _Invalid(_INIT_ERROR)
                if valid and not idat and self.color_type in (2, 3, 6):
                    # libpng drops the entries a palette image's bit depth cannot index
                    count = length // 3 if self.color_type != 3 else min(length // 3, 1 << self.bit_depth)
                    self.palette = np.frombuffer(body, np.uint8)[: 3 * count].reshape(-1, 3)
            elif ctype == b"tRNS":
                if not idat:
                    self._trns(body)
            elif ctype == b"gAMA":
                if not idat and length == 4:
                    g = struct.unpack(">I", body)[0]
                    if 16 <= g <= 625000000:
                        self.gamma = g
            elif ctype == b"sRGB":
                if not idat and length == 1:
                    self.srgb = True
            elif ctype == b"sBIT":
                if not idat:
                    self.sbit = body
            elif critical:
                if not idat:
                    raise _Invalid(_INIT_ERROR)
                self.error = "unknown critical chunk"
                break
        if first or not idat:
            raise _Invalid(_INIT_ERROR)
        if not ended and not self.error:
            self.error = "no IEND"
        self.idat = b"".join(idat)

    def _ihdr(self, body: bytes) -> None:
        w, h, bd, ct, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
        if not (0 < w <= 1000000 and 0 < h <= 1000000):  # libpng's default user limits
            raise _Invalid(_INIT_ERROR)
        if ct not in _PNG_DEPTHS or bd not in _PNG_DEPTHS[ct] or comp or filt or interlace > 1:
            raise _Invalid(_INIT_ERROR)
        self.width, self.height, self.bit_depth, self.color_type, self.interlace = w, h, bd, ct, interlace

    def _trns(self, body: bytes) -> None:
        ct = self.color_type
        if ct == 3:
            if self.palette is not None and 0 < len(body) <= len(self.palette):
                alpha = np.full(256, 255, np.uint8)
                alpha[: len(body)] = np.frombuffer(body, np.uint8)
                self.trns = alpha
        elif ct == 0 and len(body) == 2:
            self.trns = struct.unpack(">H", body)
        elif ct == 2 and len(body) == 6:
            self.trns = struct.unpack(">HHH", body)

    def raw_size(self) -> int:
        bpp = self.bit_depth * _PNG_CHANNELS[self.color_type]
        if not self.interlace:
            return self.height * (1 + (self.width * bpp + 7) // 8)
        total = 0
        for x0, y0, dx, dy in _ADAM7:
            pw = max(0, -(-(self.width - x0) // dx))
            ph = max(0, -(-(self.height - y0) // dy))
            if pw and ph:
                total += ph * (1 + (pw * bpp + 7) // 8)
        return total

    def samples(self, Image) -> np.ndarray:
        """The stored samples, shape (h, w, channels), uint8 or uint16 (sub-byte values unscaled)."""
        if len(self.idat) < 2 or (self.idat[0] & 15) != 8 or ((self.idat[0] << 8) | self.idat[1]) % 31:
            raise _Invalid("bad zlib header")
        expected = self.raw_size()
        inflate = zlib.decompressobj(-15)
        try:
            raw = inflate.decompress(self.idat[2:], expected)
        except zlib.error as e:
            raise _Invalid(str(e)) from None
        if len(raw) < expected:
            raise _Invalid("not enough image data")
        filters = self._filter_bytes(raw)
        if filters.size and filters.max() > 4:
            raise _Invalid("bad filter type")
        stream = zlib.compress(raw, 0)
        size = (self.width, self.height)
        ch, bd = _PNG_CHANNELS[self.color_type], self.bit_depth
        bits = ch * bd

        def unfilter(mode: str, rawmode: str) -> np.ndarray:
            try:
                im = Image.frombytes(mode, size, stream, "zip", rawmode, self.interlace)
            except (ValueError, OSError) as e:
                raise _Invalid(str(e)) from None
            return np.asarray(im).reshape(self.height, self.width, -1)

        if bd < 8:
            return unfilter("P", f"P;{bits}")
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[ch]
        if bd == 8:
            return unfilter(mode, mode)
        if ch <= 2:  # 16-bit gray (+alpha): the bytes as 8-bit gray+alpha (RGBA), then pairs joined
            wide = {1: "LA", 2: "RGBA"}[ch]
            b = unfilter(wide, wide).astype(np.uint16)
            return (b[..., 0::2] << 8) | b[..., 1::2]
        hi = unfilter(mode, f"{mode};16B").astype(np.uint16)
        lo = unfilter(mode, f"{mode};16L").astype(np.uint16)
        return (hi << 8) | lo

    def _filter_bytes(self, raw: bytes) -> np.ndarray:
        bpp = self.bit_depth * _PNG_CHANNELS[self.color_type]
        buf = np.frombuffer(raw, np.uint8)
        if not self.interlace:
            stride = 1 + (self.width * bpp + 7) // 8
            return buf[: self.height * stride : stride]
        starts, pos = [], 0
        for x0, y0, dx, dy in _ADAM7:
            pw = max(0, -(-(self.width - x0) // dx))
            ph = max(0, -(-(self.height - y0) // dy))
            if pw and ph:
                stride = 1 + (pw * bpp + 7) // 8
                starts.extend(range(pos, pos + ph * stride, stride))
                pos += ph * stride
        return buf[np.asarray(starts, np.int64)]


def _reciprocal(a: int) -> int:
    return int(math.floor(1e10 / a + 0.5))


def _reciprocal2(a: int, b: int) -> int:
    r = 1e15 / a
    r /= b
    return int(math.floor(r + 0.5))


def _product2(a: int, b: int) -> int:
    r = a * 1e-5
    r *= b
    return int(math.floor(r + 0.5))


def _significant(g: int) -> bool:
    return g < 95000 or g > 105000


@functools.cache
def _gamma8(g: int) -> np.ndarray:
    """png_build_8bit_table."""
    if not _significant(g):
        return np.arange(256, dtype=np.int64)
    t = [v if v in (0, 255) else int(math.floor(255 * math.pow(v / 255.0, g * 0.00001) + 0.5)) for v in range(256)]
    return np.asarray(t, np.int64)


@functools.cache
def _gamma16(shift: int, g: int) -> np.ndarray:
    """png_build_16bit_table, indexed by ``value >> shift``."""
    n = 1 << (16 - shift)
    ig = np.arange(n, dtype=np.int64)
    if _significant(g):
        fmax = 1.0 / (n - 1)
        return np.asarray(
            [int(math.floor(65535.0 * math.pow(i * fmax, g * 0.00001) + 0.5)) for i in range(n)], np.int64
        )
    if shift:
        return (ig * 65535 + (1 << (15 - shift))) // (n - 1)
    return ig


@functools.cache
def _gamma16to8(shift: int, g: int) -> np.ndarray:
    """png_build_16to8_table, indexed by ``value >> shift``."""
    n = 1 << (16 - shift)
    table = np.full(n, 65535, np.int64)
    last, mx = 0, n - 1
    for i in range(255):
        out = i * 257
        v = out + 128
        bound = v if not (0 < v < 65535) else int(math.floor(65535 * math.pow(v / 65535.0, g * 0.00001) + 0.5))
        bound = (bound * mx + 32768) // 65535 + 1
        if bound > last:
            table[last:bound] = out
            last = bound
    return table


def _png_rgb_to_gray(png: _Png, rgb: np.ndarray, bits16_out: bool) -> np.ndarray:
    """libpng's png_do_rgb_to_gray with TF's coefficients (and gamma tables when the file has a gamma)."""
    rc, gc = _RGB_TO_GRAY
    bc = 32768 - rc - gc
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    gray_px = (r == g) & (r == b)
    file_gamma = 45455 if png.srgb else png.gamma
    if file_gamma:
        screen = _reciprocal(file_gamma)
    else:
        file_gamma = screen = 100000
    tables = _significant(file_gamma) or _significant(screen)
    depth = 16 if png.bit_depth == 16 else 8
    if not tables:
        if depth == 8:
            return np.where(gray_px, r, (rc * r + gc * g + bc * b) >> 15)
        return (rc * r + gc * g + bc * b + 16384) >> 15
    if depth == 8:
        to1, from1 = _gamma8(_reciprocal(file_gamma)), _gamma8(_reciprocal(screen))
        same = _gamma8(_reciprocal2(file_gamma, screen))
        lin = (rc * to1[r] + gc * to1[g] + bc * to1[b] + 16384) >> 15
        return np.where(gray_px, same[r], from1[lin])
    sig = max(png.sbit[:3]) if len(png.sbit) >= 3 else 0
    shift = 16 - sig if 0 < sig < 16 else 0
    if not bits16_out:
        shift = max(shift, 16 - 11)
    shift = min(shift, 8)
    to1, from1 = _gamma16(shift, _reciprocal(file_gamma)), _gamma16(shift, _reciprocal(screen))
    if bits16_out:
        same = _gamma16(shift, _reciprocal2(file_gamma, screen))
    else:
        same = _gamma16to8(shift, _product2(file_gamma, screen))
    lin = (rc * to1[r >> shift] + gc * to1[g >> shift] + bc * to1[b >> shift] + 16384) >> 15
    return np.where(gray_px, same[r >> shift], from1[lin >> shift])


def _png_decode(Image, png: _Png, channels: int, bits16: bool) -> np.ndarray:
    """png::CommonFinishDecode: libpng with TF's transformations (CommonInitDecode), in libpng's order."""
    if png.error:
        raise _Invalid(png.error)
    ct, bd = png.color_type, png.bit_depth
    has_trns = png.trns is not None and ct in (0, 2, 3)
    has_alpha = bool(ct & 4)
    if channels == 0:
        channels = (4 if has_trns else 3) if ct == 3 else _PNG_CHANNELS[ct]
    want_alpha = channels % 2 == 0
    s = png.samples(Image).astype(np.int64)
    # 1. expand: palette to RGB(A), gray to 8 bits, tRNS to alpha (only when alpha is wanted)
    alpha = None
    if ct == 3:
        pal = np.zeros((256, 3), np.int64)
        pal[: len(png.palette)] = png.palette
        idx = s[..., 0]
        if want_alpha and has_trns:
            alpha = png.trns.astype(np.int64)[idx]
        s = pal[idx]
        depth = 8
    else:
        depth = bd
        if ct in (0, 4) and bd < 8:
            key = s[..., 0]
            if want_alpha and has_trns:
                alpha = np.where(key == (png.trns[0] & ((1 << bd) - 1)), 0, 255)
            s = s * {1: 255, 2: 0x55, 4: 0x11}[bd]
            depth = 8
        elif want_alpha and has_trns:
            mask = 0xFFFF if bd == 16 else 0xFF
            key = np.asarray([t & mask for t in png.trns])
            alpha = np.where((s == key).all(-1), 0, (1 << bd) - 1)
        if has_alpha:
            s, alpha = s[..., :-1], s[..., -1]
            if not want_alpha:
                alpha = None
    color = s.shape[-1] == 3
    # 2. rgb to gray / gray to rgb
    if channels < 3 and color:
        s = _png_rgb_to_gray(png, s, bits16)[..., None]
    elif channels >= 3 and not color:
        s = np.repeat(s, 3, -1)
    # 3. 16 to 8 bits (the high byte), alpha filler, 8 to 16 bits
    if depth == 16 and not bits16:
        s = s >> 8
        alpha = None if alpha is None else alpha >> 8
    if want_alpha and alpha is None:
        filler = (1 << bd) - 1
        alpha = np.full(s.shape[:-1], filler if (depth == 16 and bits16) else filler & 0xFF, np.int64)
    if want_alpha:
        s = np.concatenate([s, alpha[..., None]], -1)
    if bits16:
        return (s * 257 if depth <= 8 else s).astype(np.uint16)
    return s.astype(np.uint8)


# -- GIF -------------------------------------------------------------------------------------------------------


class _GifFrame:
    __slots__ = ("left", "top", "width", "height", "interlace", "palette", "transparent", "code_size", "blocks")


def _gif_parse(data: bytes) -> tuple[np.ndarray | None, list[_GifFrame], str]:
    """giflib's DGifOpen + DGifSlurp structure (the LZW data is decoded later). Returns the global palette, the
    frames read and the error that stopped reading ('' at the trailer)."""
    n = len(data)
    if n < 13:
        raise _Invalid("failed to open gif file: Failed to read from given file")
    flags = data[10]
    pos = 13
    global_pal = None
    if flags & 0x80:
        size = 3 << ((flags & 7) + 1)
        if pos + size > n:
            raise _Invalid("failed to open gif file: Failed to read from given file")
        global_pal = np.frombuffer(data[pos : pos + size], np.uint8).reshape(-1, 3)
        pos += size
    frames: list[_GifFrame] = []
    transparent = None
    gce_seen = False

    def blocks(p: int) -> tuple[list[bytes], int]:
        out = []
        while True:
            if p >= n:
                raise _Invalid("read")
            size = data[p]
            if size == 0:
                return out, p + 1
            if p + 1 + size > n:
                raise _Invalid("read")
            out.append(data[p + 1 : p + 1 + size])
            p += 1 + size

    while True:
        if pos >= n:
            return global_pal, frames, "Failed to read from given file"
        rec = data[pos]
        pos += 1
        if rec == 0x3B:
            return global_pal, frames, ""
        if rec == 0x21:
            if pos >= n:
                return global_pal, frames, "Failed to read from given file"
            func = data[pos]
            try:
                subs, pos = blocks(pos + 1)
            except _Invalid:
                return global_pal, frames, "Failed to read from given file"
            if func == 0xF9 and not gce_seen:
                gce_seen = True
                first = subs[0] if subs else b""
                transparent = first[3] if len(first) == 4 and first[0] & 1 else None
            continue
        if rec != 0x2C:
            return global_pal, frames, "Wrong record type detected"
        if pos + 9 > n:
            return global_pal, frames, "Failed to read from given file"
        f = _GifFrame()
        f.left, f.top, f.width, f.height, fl = struct.unpack("<HHHHB", data[pos : pos + 9])
        pos += 9
        f.interlace = bool(fl & 0x40)
        f.palette = None
        if fl & 0x80:
            size = 3 << ((fl & 7) + 1)
            if pos + size > n:
                raise _Invalid("failed to slurp gif file: Failed to read from given file")
            f.palette = np.frombuffer(data[pos : pos + size], np.uint8).reshape(-1, 3)
            pos += size
        if f.width == 0 or f.height == 0 or pos >= n:
            raise _Invalid("failed to slurp gif file: Failed to read from given file")
        f.code_size = data[pos]
        try:
            subs, pos = blocks(pos + 1)
        except _Invalid:
            raise _Invalid("failed to slurp gif file: Failed to read from given file") from None
        f.blocks = subs
        f.transparent = transparent
        transparent, gce_seen = None, False
        frames.append(f)


def _gif_raster(Image, f: _GifFrame) -> np.ndarray:
    """The frame's colour indices (giflib's DGifGetLine), LZW-decoded by Pillow."""
    if not 1 <= f.code_size <= 8:
        raise _Invalid("failed to slurp gif file: Image is defective, decoding aborted")
    stream = b"".join(bytes([len(b)]) + b for b in f.blocks) + b"\0"
    out = []
    for fill in (0, 255):
        im = Image.new("P", (f.width, f.height), fill)
        try:
            im.frombytes(stream, "gif", f.code_size, f.interlace, -1)
        except (ValueError, OSError):
            raise _Invalid("failed to slurp gif file: Image is defective, decoding aborted") from None
        out.append(np.asarray(im))
    if (out[0] != out[1]).any():  # the LZW end code came before the last pixel
        raise _Invalid("failed to slurp gif file: Data is not in GIF format")
    return out[0]


def _gif_decode(Image, data: bytes, expand_animations: bool) -> np.ndarray:
    """gif::Decode: frames composed on a canvas of the largest frame; transparent pixels keep the previous
    frame's (black on the first); no disposal."""
    global_pal, frames, _ = _gif_parse(data)
    if not frames:
        raise _Invalid("gif file does not contain any image")
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    count = len(frames) if expand_animations else 1
    out = np.zeros((count, height, width, 3), np.uint8)
    for k in range(count):
        f = frames[k]
        if k > 0:
            out[k] = out[k - 1]
        pal = f.palette if f.palette is not None else global_pal
        if pal is None:
            raise _Invalid(f"missing color map for frame {k}")
        raster = _gif_raster(Image, f)
        right, bottom = min(f.left + f.width, width), min(f.top + f.height, height)
        if right <= f.left or bottom <= f.top:
            continue
        idx = raster[: bottom - f.top, : right - f.left].astype(np.int64)
        keep = idx == f.transparent if f.transparent is not None else np.zeros(idx.shape, bool)
        bad = (idx >= len(pal)) & ~keep
        if bad.any():
            raise _Invalid(f"found color index {int(idx[bad][0])} outside of color map range {len(pal)}")
        region = out[k, f.top : bottom, f.left : right]
        colors = pal[np.minimum(idx, len(pal) - 1)]
        region[...] = np.where(keep[..., None], region if k else 0, colors)
    return out


# -- BMP -------------------------------------------------------------------------------------------------------


def _bmp_decode(data: bytes, channels: int) -> np.ndarray:
    """DecodeImageV2Op::DecodeBmpV2: TF's own reader (uncompressed rows, 8/24/32 bits, BGR(A))."""
    if len(data) < 32:
        raise _Invalid(
            f"Incomplete bmp content, requires at least 32 bytes to find the header size, width, height, and bpp, "
            f"got {len(data)} bytes"
        )
    (header_size,) = struct.unpack("<i", data[10:14])
    width, height = struct.unpack("<ii", data[18:26])
    (bpp,) = struct.unpack("<h", data[28:30])
    img_channels = int(bpp / 8)  # C division truncates toward zero
    if img_channels not in (1, 3, 4):
        raise _Invalid(f"Number of channels inherent in the image must be 1, 3 or 4, was {img_channels}")
    requested = channels or img_channels
    if width <= 0:
        raise _Invalid("Width must be positive")
    if height == 0:
        raise _Invalid("Height must be nonzero")
    if header_size < 0:
        raise _Invalid("header size must be nonnegative")
    if width * abs(height) >= (2**31 - 1) // 8:
        raise _Invalid("Total possible pixel bytes must be less than 2^30")
    abs_h = abs(height)
    row_size = (img_channels * width + 3) // 4 * 4
    size_diff = len(data) - header_size - row_size * abs_h
    if size_diff != 0:
        raise _Invalid(f"Input size should match (header_size + row_size * abs_height) but they differ by {size_diff}")
    rows = np.frombuffer(data, np.uint8, row_size * abs_h, header_size).reshape(abs_h, row_size)
    px = rows[:, : width * img_channels].reshape(abs_h, width, img_channels)
    if height > 0:  # bottom-up
        px = px[::-1]
    if img_channels == 1:
        out = np.repeat(px, 3, -1) if requested in (3, 4) else px
    else:
        out = px[..., [2, 1, 0]]
    if requested == 4:
        a = px[..., 3:4] if img_channels == 4 else np.full(px.shape[:2] + (1,), 255, np.uint8)
        out = np.concatenate([out, a], -1)
    return np.ascontiguousarray(out)


# -- the decode ops ----------------------------------------------------------------------------------------------


def _decode(
    ctx,
    contents,
    *,
    channels: int = 0,
    dtype: Any = np.uint8,
    expand_animations: bool = True,
    jpeg: dict | None = None,
    crop: Any = None,
) -> np.ndarray:
    """DecodeImageV2Op::Compute for op ``ctx.node.op``."""
    op_type = ctx.node.op
    dtype = np.dtype(dtype)
    if channels not in (0, 1, 3, 4):
        raise ctx.error(f"`channels` must be 0, 1, 3 or 4 but got {channels}")
    data = _contents(ctx, contents)
    if not data:
        raise ctx.error("Input is empty.")
    fmt = _magic(data)
    Image = _pil(ctx)
    try:
        if fmt == "jpeg":
            return _decode_jpeg(ctx, Image, data, op_type, channels, dtype, jpeg or {}, crop)
        if fmt == "png":
            return _decode_png(ctx, Image, data, op_type, channels, dtype)
        if fmt == "gif":
            return _decode_gif(ctx, Image, data, op_type, channels, dtype, expand_animations)
        if fmt == "bmp":
            return _decode_bmp(ctx, data, op_type, channels, dtype)
        if fmt == "webp":
            frames = _decode_webp(Image, data, channels, dtype)
            return frames[0] if op_type == "DecodeImage" and not expand_animations else frames
    except _Invalid as e:
        raise ctx.error(str(e)) from None
    raise ctx.error("Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.")


def _decode_jpeg(ctx, Image, data, op_type, channels, dtype, flags, crop) -> np.ndarray:
    if channels not in (0, 1, 3):
        raise _Invalid("JPEG does not support 4 channels")
    window = None
    if op_type == "DecodeAndCropJpeg":
        cw = np.asarray(crop)
        if cw.ndim != 1:
            raise _Invalid(f"crop_window must be 1-D, got shape {list(cw.shape)}")
        if cw.shape[0] != 4:
            raise _Invalid(f"crop_size must have four elements {list(cw.shape)}")
        window = tuple(int(v) for v in cw)
    elif op_type == "DecodeBmp":
        raise _Invalid("Trying to decode JPEG format using DecodeBmp op. Use `decode_jpeg` or `decode_image` instead.")
    failed = "jpeg::Uncompress failed. Invalid JPEG data or crop window."
    try:
        dec = _JpegDecoder(
            Image,
            data,
            channels,
            flags.get("ratio", 1),
            flags.get("fancy", True),
            flags.get("fast", True),
            flags.get("recover", False),
            flags.get("fraction", 1.0),
            window,
        )
        img = dec.decode()
    except (_Invalid, ValueError, OSError, SyntaxError, struct.error, IndexError):
        raise _Invalid(failed) from None
    if op_type == "DecodeGif":
        img = img[None]
    return _convert(img, dtype)


def _decode_png(ctx, Image, data, op_type, channels, dtype) -> np.ndarray:
    png = _Png(data)
    w, h = png.width, png.height
    if w >= 1 << 27 or h >= 1 << 27 or w * h >= 1 << 29:
        raise _Invalid(f"PNG size too large for int: {w} by {h}")
    if op_type == "DecodeBmp":
        raise _Invalid("Trying to decode PNG format using DecodeBmp op. Use `decode_png` or `decode_image` instead.")
    if op_type == "DecodeAndCropJpeg":
        raise _Invalid("DecodeAndCropJpeg operation can run on JPEG only, but detected PNG.")
    try:
        img = _png_decode(Image, png, channels, dtype != np.uint8)
    except _Invalid:
        raise _Invalid(f"Invalid PNG data, size {len(data)}") from None
    if op_type == "DecodeGif":
        img = img[None]
    if dtype == np.float32:
        return img.astype(np.float32) * np.float32(1.0 / 65535)
    return img


def _decode_gif(ctx, Image, data, op_type, channels, dtype, expand_animations) -> np.ndarray:
    if channels not in (0, 3):
        raise _Invalid(f"channels must be 0 or 3 for GIF, got {channels}")
    if op_type == "DecodeBmp":
        raise _Invalid("Trying to decode GIF format using DecodeBmp op. Use `decode_gif` or `decode_image` instead.")
    if op_type == "DecodeAndCropJpeg":
        raise _Invalid("DecodeAndCropJpeg operation can run on JPEG only, but detected GIF.")
    expand = op_type == "DecodeGif" or (op_type == "DecodeImage" and expand_animations)
    try:
        frames = _gif_decode(Image, data, expand or op_type != "DecodeImage")
    except _Invalid as e:
        raise _Invalid(f"Invalid GIF data (size {len(data)}), {e}") from None
    if op_type in ("DecodePng", "DecodeJpeg"):
        if frames.shape[0] != 1:
            raise _Invalid(
                f"Got {frames.shape[0]} frames, but animated gifs can only be decoded by tf.io.decode_gif or "
                "tf.io.decode_image"
            )
        frames = frames[0]
    elif op_type == "DecodeImage" and not expand_animations:
        frames = frames[0]
    return _convert(frames, dtype)


def _decode_bmp(ctx, data, op_type, channels, dtype) -> np.ndarray:
    if channels == 1:
        raise _Invalid(f"`channels` must be 0, 3 or 4 for BMP, but got {channels}")
    if op_type not in ("DecodeBmp", "DecodeImage"):
        if op_type == "DecodeAndCropJpeg":
            raise _Invalid("DecodeAndCropJpeg operation can run on JPEG only, but detected BMP.")
        raise _Invalid(
            f"Trying to decode BMP format using a wrong op. Use `decode_bmp` or `decode_image` instead. Op used: "
            f"{op_type}"
        )
    return _convert(_bmp_decode(data, channels), dtype)


def _jpeg_flags(ctx) -> dict:
    ratio = int(ctx.attr("ratio", 1))
    if ratio not in (1, 2, 4, 8):
        raise ctx.error(f"ratio must be 1, 2, 4, or 8, got {ratio}")
    dct = ctx.attr("dct_method", "")
    dct = dct.decode() if isinstance(dct, bytes) else dct
    if dct not in ("", "INTEGER_FAST", "INTEGER_ACCURATE"):
        raise ctx.error("dct_method must be one of {'', 'INTEGER_FAST', 'INTEGER_ACCURATE'}")
    return {
        "ratio": ratio,
        "fancy": bool(ctx.attr("fancy_upscaling", True)),
        "fast": dct != "INTEGER_ACCURATE",  # TF maps '' to JDCT_IFAST
        "recover": bool(ctx.attr("try_recover_truncated", False)),
        "fraction": float(ctx.attr("acceptable_fraction", 1.0)),
    }


@op("DecodeJpeg")
def decode_jpeg(ctx, contents):
    return _decode(ctx, contents, channels=int(ctx.attr("channels", 0)), jpeg=_jpeg_flags(ctx))


@op("DecodeAndCropJpeg", static=(1,))
def decode_and_crop_jpeg(ctx, contents, crop_window):
    return _decode(ctx, contents, channels=int(ctx.attr("channels", 0)), jpeg=_jpeg_flags(ctx), crop=crop_window)


def _dtype_attr(ctx, allowed: tuple, op_name: str) -> np.dtype:
    dtype = np.dtype(ctx.dtype("dtype", np.uint8))
    if dtype not in allowed:
        names = ", ".join(np.dtype(d).name for d in allowed)
        raise ctx.error(f"`dtype` for `{op_name}` must be {names} but got {dtype.name}")
    return dtype


@op("DecodePng")
def decode_png(ctx, contents):
    dtype = _dtype_attr(ctx, (np.uint8, np.uint16), "DecodePng")
    return _decode(ctx, contents, channels=int(ctx.attr("channels", 0)), dtype=dtype)


@op("DecodeImage")
def decode_image(ctx, contents):
    dtype = _dtype_attr(ctx, (np.uint8, np.uint16, np.float32), "DecodeImage")
    return _decode(
        ctx,
        contents,
        channels=int(ctx.attr("channels", 0)),
        dtype=dtype,
        expand_animations=bool(ctx.attr("expand_animations", True)),
    )


@op("DecodeGif")
def decode_gif(ctx, contents):
    return _decode(ctx, contents, channels=3)


@op("DecodeBmp")
def decode_bmp(ctx, contents):
    return _decode(ctx, contents, channels=int(ctx.attr("channels", 0)))


@op("ExtractJpegShape")
def extract_jpeg_shape(ctx, contents):
    data = _contents(ctx, contents, "contents")
    dtype = np.dtype(ctx.dtype("output_type", np.int32))
    try:
        shape = _jpeg_shape(data) if _magic(data) == "jpeg" else None
    except _Invalid:
        shape = None
    if shape is None:
        raise ctx.error(f"Invalid JPEG data, size {len(data)}")
    return np.asarray(shape, dtype)


# -- encoders --------------------------------------------------------------------------------------------------


def _png_filter_rows(img: np.ndarray, bpp: int) -> bytes:
    """libpng's default row filtering: each row takes the filter (None, Sub, Up, Average, Paeth) whose bytes,
    read as signed, have the smallest sum of magnitudes, the first on ties (png_write_find_filter)."""
    x = img
    h = x.shape[0]
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    ai, bi, ci = a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)
    pa, pb, pc = np.abs(bi - ci), np.abs(ai - ci), np.abs(ai + bi - 2 * ci)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    average = ((ai + bi) >> 1).astype(np.uint8)
    filtered = [x, x - a, x - b, x - average, x - paeth]  # uint8: modulo 256
    magnitude = np.minimum(np.arange(256), 256 - np.arange(256)).astype(np.int32)
    best = np.argmin(np.stack([magnitude[f].sum(1) for f in filtered]), 0)
    out = np.empty((h, x.shape[1] + 1), np.uint8)
    out[:, 0] = best
    for k, f in enumerate(filtered):
        rows = best == k
        out[rows, 1:] = f[rows]
    return out.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_encode(img: np.ndarray, compression: int) -> bytes:
    h, w, ch = img.shape
    bits = 16 if img.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    flat = img.astype(">u2").view(np.uint8) if bits == 16 else img
    rows = np.ascontiguousarray(flat).reshape(h, w * ch * bits // 8)
    raw = _png_filter_rows(rows, ch * bits // 8)
    level = zlib.Z_DEFAULT_COMPRESSION if compression < 0 else compression
    z = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
    idat = z.compress(raw) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, bits, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@op("EncodePng")
def encode_png(ctx, image):
    compression = int(ctx.attr("compression", -1))
    if not -1 <= compression <= 9:
        raise ctx.error(f"compression should be in [-1,9], got {compression}")
    img = np.asarray(ctx.static(image, "the image to encode"))
    if img.dtype not in (np.uint8, np.uint16):
        raise ctx.error(f"image must have type uint8 or uint16, got {img.dtype.name}")
    if img.ndim < 3:
        raise ctx.error(f"images must be at least rank 3 {list(img.shape)}")
    channels = img.shape[-1]
    if not 1 <= channels <= 4:
        raise ctx.error(f"image must have 1, 2, 3, or 4 channels, got {channels}")
    batch = img.shape[:-3]
    flat = img.reshape((-1,) + img.shape[-3:])
    if flat.shape[1] == 0 or flat.shape[2] == 0:
        if flat.shape[0]:
            bad = ", ".join(str(i) for i in range(flat.shape[0]))
            raise ctx.error(f"PNG encoding failed at the following flattened batch indices: {bad}")
    return _bytes_array([_png_encode(x, compression) for x in flat], batch)


def _jpeg_encode(
    ctx,
    img: np.ndarray,
    fmt: str,
    quality: int,
    progressive: bool,
    optimize: bool,
    chroma: bool,
    density_unit: int,
    x_density: int,
    y_density: int,
    xmp: bytes,
) -> bytes:
    """jpeg::Compress through Pillow's libjpeg-turbo encoder: jpeg_set_defaults, jpeg_set_quality(quality,
    TRUE), optional simple progression, Huffman optimisation and 1x1 chroma sampling, TF's JFIF density and
    the XMP APP1 marker after the JFIF header."""
    import io

    Image = _pil(ctx)
    if img.ndim != 3:
        raise ctx.error(f"image must be 3-dimensional{list(img.shape)}")
    channels = img.shape[2]
    if fmt == "":
        if channels not in (1, 3):
            raise ctx.error(f"image must have 1 or 3 channels, got {list(img.shape)}")
    else:
        want = 1 if fmt == "grayscale" else 3
        if channels != want:
            raise ctx.error(f"format {fmt} expects {want} channels, got {list(img.shape)}")
    if img.shape[0] == 0 or img.shape[1] == 0 or img.shape[0] * img.shape[1] >= 1 << 29:
        raise ctx.error("JPEG encoding failed")
    pil = Image.fromarray(np.ascontiguousarray(img[..., 0] if channels == 1 else img), "L" if channels == 1 else "RGB")
    buf = io.BytesIO()
    pil.save(
        buf,
        "JPEG",
        quality=quality,
        progressive=progressive,
        optimize=optimize,
        subsampling=0 if channels == 3 and not chroma else -1,  # -1: libjpeg's default (2x2 luma)
        dpi=(1, 1),
    )
    out = bytearray(buf.getvalue())
    if out[2:4] != b"\xff\xe0" or out[6:11] != b"JFIF\0":
        raise ctx.error("JPEG encoding failed (no JFIF header from Pillow)")
    out[13] = density_unit
    out[14:18] = struct.pack(">HH", x_density & 0xFFFF, y_density & 0xFFFF)
    if xmp:
        body = b"http://ns.adobe.com/xap/1.0/\0" + xmp
        end = 4 + struct.unpack(">H", out[4:6])[0]
        out[end:end] = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    return bytes(out)


@op("EncodeJpeg")
def encode_jpeg(ctx, image):
    fmt = ctx.attr("format", "")
    if fmt not in ("", "grayscale", "rgb"):
        raise ctx.error(f"format must be '', grayscale or rgb, got {fmt}")
    quality = int(ctx.attr("quality", 95))
    if not 0 <= quality <= 100:
        raise ctx.error(f"quality must be in [0,100], got {quality}")
    unit = ctx.attr("density_unit", "in")
    if unit not in ("in", "cm"):
        raise ctx.error(f"density_unit must be 'in' or 'cm'{unit}")
    xmp = ctx.attr("xmp_metadata", "")
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    img = np.asarray(ctx.static(image, "the image to encode"))
    data = _jpeg_encode(
        ctx,
        img,
        fmt,
        quality,
        bool(ctx.attr("progressive", False)),
        bool(ctx.attr("optimize_size", False)),
        bool(ctx.attr("chroma_downsampling", True)),
        1 if unit == "in" else 2,
        int(ctx.attr("x_density", 300)),
        int(ctx.attr("y_density", 300)),
        xmp,
    )
    return _bytes_array([data], ())


@op("EncodeJpegVariableQuality")
def encode_jpeg_variable_quality(ctx, images, quality):
    q = np.asarray(ctx.static(quality, "the JPEG quality"))
    if q.ndim != 0:
        raise ctx.error(f"quality must be scalar: {list(q.shape)}")
    q = int(q)
    if not 0 <= q <= 100:
        raise ctx.error(f"quality must be in [0,100], got {q}")
    img = np.asarray(ctx.static(images, "the image to encode"))
    data = _jpeg_encode(ctx, img, "", q, False, False, True, 1, 300, 300, b"")
    return _bytes_array([data], ())


# -- WebP ------------------------------------------------------------------------------------------------------


def _webp_features(data: bytes) -> tuple[bool, bool] | None:
    """(has_alpha, has_animation) from the RIFF header as libwebp's WebPGetFeatures reads them, or None when the
    data is not WebP: VP8X carries both flags, VP8L its alpha hint, plain VP8 has neither."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return bool(data[20] & 0x10), bool(data[20] & 0x02)
    if chunk == b"VP8L":
        return bool(data[24] & 0x10), False
    return (False, False) if chunk == b"VP8 " else None


def _decode_webp(Image, data: bytes, channels: int, dtype: np.dtype) -> np.ndarray:
    """DecodeImageV2Op's WebP path, which every decode op takes (DecodeAndCropJpeg without cropping):
    ``[frames, height, width, channels]`` uint8, RGB or RGBA as the file stores it (an animation is always RGBA,
    its frames composited on the canvas); ``channels`` must match. libwebp decodes (Pillow's), as in TF."""
    import io

    from PIL import features

    if not features.check("webp"):
        raise _Invalid("decoding WebP needs Pillow built with WebP support (libwebp)")
    if np.dtype(dtype) != np.uint8:
        raise _Invalid("WebP only supports uint8 for dtype")
    if channels not in (0, 3, 4):
        raise _Invalid("WebP only supports 3 or 4 channels")
    found = _webp_features(data)
    if found is None:
        raise _Invalid("Failed to decode WebP header.")
    stored = 4 if found[0] or found[1] else 3
    if channels not in (0, stored):
        raise _Invalid("Number of channels requested does not match input")
    try:
        im = Image.open(io.BytesIO(data))
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGBA" if stored == 4 else "RGB")))
    except (OSError, ValueError, SyntaxError) as e:
        raise _Invalid(f"Failed to decode WebP image: {e}") from None
    return np.stack(frames)


@op("DecodeWebP")
def decode_webp(ctx, contents):
    """tf.io.decode_webp. Like TF's kernel it also decodes PNG and JPEG (as a 3-D image) and rejects GIF and
    BMP."""
    data = _contents(ctx, contents)
    if _magic(data) in ("gif", "bmp"):
        raise ctx.error(f"Bad op type DecodeWebP for a {_magic(data).upper()} image")
    dtype = _dtype_attr(ctx, (np.uint8,), "DecodeWebP")
    return _decode(ctx, contents, channels=int(ctx.attr("channels", 0)), dtype=dtype)
