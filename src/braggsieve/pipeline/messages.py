"""Frame messages over ZeroMQ: the DECTRIS Stream V2 (CBOR) format and braggsieve's simple multipart format.

**DECTRIS Stream V2** (SIMPLON "stream2"; the detector binds a PUSH socket, port 31001, receivers connect a
PULL socket).  Every message is ONE ZeroMQ part holding a CBOR map whose ``type`` is ``start``, ``image`` or
``end``.  Decoded here: ``series_id``, ``series_unique_id``; on ``start`` ``image_size_x``/``image_size_y``,
``channels``, ``saturation_value`` and the optional ``pixel_mask`` (channel -> 2-D array, nonzero = bad);
on ``image`` ``image_id`` and ``data`` (channel -> multi-dimensional array, CBOR tag 40 over an RFC 8746
typed array, tags 64-87, possibly inside DECTRIS compression tag 56500: ``["bslz4", element size, bytes]``
or ``["lz4", 0, bytes]``, both in the HDF5 filters' framing).  The first channel (``channels[0]``, or the
first key of ``data``) is processed.

**Simple format** (``braggsieve``): multipart messages whose first part is a UTF-8 JSON header::

    start: {"htype": "braggsieve-start-1", "series": S, "shape": [ny, nx], "dtype": "<u2", "nframes": N}
    frame: {"htype": "braggsieve-frame-1", "series": S, "frame": K, "shape": [ny, nx], "dtype": "<u2"}
           + a second part: the raw frame, ny * nx values of dtype in C order
    end:   {"htype": "braggsieve-end-1", "series": S, "frames": N}

``S`` is a string or integer naming the series, ``K`` the 0-based frame number in it; ``dtype`` a numpy
type string with byte order.  ``nframes``/``frames`` are informative.

:func:`decode` turns either into :class:`Start`, :class:`Frame` or :class:`End`, raising
:class:`MalformedMessage` (with the reason) for anything else; :func:`encode_stream2` and
:func:`encode_simple` build them (``braggsieve replay``).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COMPRESSION_TAG = 56500
MULTI_DIM_TAG = 40
SIMPLE = "braggsieve"
STREAM2 = "stream2"
FORMATS = (STREAM2, SIMPLE)


class MalformedMessage(ValueError):
    """A message that is not a valid start, frame or end message of either format."""


@dataclass(frozen=True)
class Start:
    series: str
    shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    pixel_mask: np.ndarray | None = None
    saturation: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    series: str
    frame: int
    data: np.ndarray  # (ny, nx), the detector's dtype


@dataclass(frozen=True)
class End:
    series: str


# -- RFC 8746 typed arrays ------------------------------------------------------------------------------------------
def typed_array_dtype(tag: int) -> np.dtype:
    """The numpy dtype of RFC 8746 typed-array tag 64..87 (bits: float, signed, little-endian, length)."""
    if not 64 <= tag <= 87 or tag == 76:  # 76 is reserved
        raise MalformedMessage(f"CBOR tag {tag} is not a typed array")
    floating, signed, little, length = (tag >> 4) & 1, (tag >> 3) & 1, (tag >> 2) & 1, tag & 3
    kind, size = ("f", 2 << length) if floating else ("i" if signed else "u", 1 << length)
    return np.dtype(("<" if little or size == 1 else ">") + f"{kind}{size}")


def typed_array_tag(dtype) -> int:
    """The RFC 8746 tag of ``dtype`` (little-endian for multi-byte types)."""
    dtype = np.dtype(dtype)
    little = dtype.byteorder == "<" or (dtype.byteorder == "=" and np.little_endian) or dtype.itemsize == 1
    if dtype.kind == "f":
        length = {2: 0, 4: 1, 8: 2, 16: 3}[dtype.itemsize]
        return 64 | 16 | (4 if little else 0) | length
    length = {1: 0, 2: 1, 4: 2, 8: 3}[dtype.itemsize]
    return 64 | (8 if dtype.kind == "i" else 0) | (4 if little and dtype.itemsize > 1 else 0) | length


# -- HDF5-framed compression (bitshuffle-LZ4, LZ4) through hdf5plugin's filters ----------------------------------------
class _Hdf5Codec:
    """Compress / decompress one chunk with an HDF5 filter, in an in-memory HDF5 file (no extra dependency:
    the same filters that read the HDF5 inputs)."""

    def __init__(self):
        self._files: dict[tuple, Any] = {}

    def _dataset(self, algorithm: str, elem_size: int, nbytes: int):
        import h5py
        import hdf5plugin

        key = (algorithm, elem_size, nbytes)
        if key not in self._files:
            if len(self._files) > 8:
                for handle, _ in self._files.values():
                    handle.close()
                self._files.clear()
            if algorithm == "bslz4":
                dtype, filters = np.dtype(f"u{elem_size}") if elem_size in (1, 2, 4, 8) else None, \
                    hdf5plugin.Bitshuffle(cname="lz4")
            elif algorithm == "lz4":
                dtype, filters = np.dtype(np.uint8), hdf5plugin.LZ4()
                elem_size = 1
            else:
                raise MalformedMessage(f"unknown compression {algorithm!r}")
            if dtype is None or nbytes % elem_size:
                raise MalformedMessage(f"bad {algorithm} element size {elem_size} for {nbytes} bytes")
            handle = h5py.File(f"braggsieve-codec-{id(self)}-{len(self._files)}", "w", driver="core",
                               backing_store=False)
            count = nbytes // elem_size
            dataset = handle.create_dataset("x", shape=(count,), chunks=(count,), dtype=dtype, **filters)
            self._files[key] = (handle, dataset)
        return self._files[key][1]

    def decompress(self, algorithm: str, elem_size: int, data: bytes) -> bytes:
        if len(data) < 12 and algorithm in ("bslz4", "lz4"):
            raise MalformedMessage(f"{algorithm} data of {len(data)} bytes is too short")
        nbytes = int.from_bytes(data[:8], "big")  # both framings start with the 8-byte big-endian size
        if nbytes > 1 << 34:
            raise MalformedMessage(f"{algorithm} data announces {nbytes} bytes")
        dataset = self._dataset(algorithm, elem_size if algorithm == "bslz4" else 1, nbytes)
        try:
            dataset.id.write_direct_chunk((0,), bytes(data))
            return dataset[()].tobytes()
        except (OSError, ValueError) as exc:
            raise MalformedMessage(f"cannot decompress {algorithm} data ({exc})") from None

    def compress(self, algorithm: str, array: np.ndarray) -> bytes:
        raw = np.ascontiguousarray(array).reshape(-1)
        dataset = self._dataset(algorithm, raw.dtype.itemsize if algorithm == "bslz4" else 1, raw.nbytes)
        dataset[...] = raw.view(dataset.dtype)
        return dataset.id.read_direct_chunk((0,))[1]


_CODECS = threading.local()  # one codec per thread: a codec's write-then-read of its chunk must not interleave


def _codec() -> _Hdf5Codec:
    if not hasattr(_CODECS, "codec"):
        _CODECS.codec = _Hdf5Codec()
    return _CODECS.codec


# -- decoding --------------------------------------------------------------------------------------------------------
def _tag_hook(*args):
    """cbor2's tag hook: (tag, immutable) in cbor2 >= 6, (decoder, tag) before; arrays may come as tuples."""
    import cbor2

    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))
    if tag.tag == COMPRESSION_TAG:
        if not (isinstance(tag.value, (list, tuple)) and len(tag.value) == 3 and isinstance(tag.value[2], bytes)):
            raise MalformedMessage("compression tag 56500 needs [algorithm, modifier, bytes]")
        algorithm, modifier, data = tag.value
        return _codec().decompress(str(algorithm), int(modifier or 0), data)
    if 64 <= tag.tag <= 87:
        if not isinstance(tag.value, (bytes, bytearray)):
            raise MalformedMessage(f"typed array tag {tag.tag} over a {type(tag.value).__name__}")
        dtype = typed_array_dtype(tag.tag)
        if len(tag.value) % dtype.itemsize:
            raise MalformedMessage(f"typed array of {len(tag.value)} bytes for {dtype}")
        return np.frombuffer(tag.value, dtype=dtype)
    if tag.tag == MULTI_DIM_TAG:
        dims, values = tag.value if isinstance(tag.value, (list, tuple)) and len(tag.value) == 2 else (None, None)
        if not isinstance(values, np.ndarray) or not isinstance(dims, (list, tuple)):
            raise MalformedMessage("tag 40 needs [dimensions, typed array]")
        if int(np.prod(dims)) != values.size:
            raise MalformedMessage(f"dimensions {dims} for {values.size} values")
        return values.reshape([int(d) for d in dims])
    return cbor2.CBORTag(tag.tag, tag.value)


def _series(message: dict) -> str:
    value = message.get("series_unique_id") or message.get("series_id")
    if value is None:
        raise MalformedMessage(f"{message.get('type')} message without series_id")
    return str(value)


def _decode_stream2(payload: bytes) -> Start | Frame | End:
    import cbor2

    try:
        message = cbor2.loads(payload, tag_hook=_tag_hook)
    except MalformedMessage:
        raise
    except Exception as exc:  # cbor2 raises several types on garbage
        raise MalformedMessage(f"not CBOR ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict) or "type" not in message:
        raise MalformedMessage("CBOR message is not a map with a 'type'")
    kind = message["type"]
    if kind == "start":
        channels = message.get("channels") or []
        masks = message.get("pixel_mask") or {}
        mask = masks.get(channels[0]) if channels and isinstance(masks, dict) else None
        shape = (int(message["image_size_y"]), int(message["image_size_x"])) if "image_size_x" in message else None
        return Start(_series(message), shape=shape, pixel_mask=np.asarray(mask) != 0 if mask is not None else None,
                     saturation=message.get("saturation_value"),
                     info={k: message[k] for k in ("series_id", "number_of_images", "incident_wavelength",
                                                   "beam_center_x", "beam_center_y") if k in message})
    if kind == "image":
        data = message.get("data")
        if not isinstance(data, dict) or not data:
            raise MalformedMessage("image message without data")
        image = next(iter(data.values()))
        if not isinstance(image, np.ndarray) or image.ndim != 2:
            raise MalformedMessage("image data is not a 2-D typed array")
        if "image_id" not in message:
            raise MalformedMessage("image message without image_id")
        return Frame(_series(message), int(message["image_id"]), image)
    if kind == "end":
        return End(_series(message))
    raise MalformedMessage(f"unknown message type {kind!r}")


def _decode_simple(parts: list[bytes]) -> Start | Frame | End:
    try:
        header = json.loads(bytes(parts[0]).decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict) or "series" not in header:
        raise MalformedMessage("header without 'series'")
    kind, series = header.get("htype"), str(header["series"])
    try:
        if kind == "braggsieve-start-1":
            shape = tuple(int(s) for s in header["shape"]) if "shape" in header else None
            return Start(series, shape=shape, dtype=np.dtype(header["dtype"]) if "dtype" in header else None,
                         info={k: header[k] for k in ("nframes",) if k in header})
        if kind == "braggsieve-frame-1":
            shape, dtype = tuple(int(s) for s in header["shape"]), np.dtype(header["dtype"])
            if len(parts) != 2 or len(parts[1]) != int(np.prod(shape)) * dtype.itemsize or len(shape) != 2:
                raise MalformedMessage(f"frame {header.get('frame')}: {len(parts) - 1} data part(s) of "
                                       f"{len(parts[1]) if len(parts) > 1 else 0} bytes for {shape} {dtype}")
            return Frame(series, int(header["frame"]), np.frombuffer(parts[1], dtype=dtype).reshape(shape))
        if kind == "braggsieve-end-1":
            return End(series)
    except (KeyError, TypeError) as exc:
        raise MalformedMessage(f"{kind} header lacks {exc}") from None
    raise MalformedMessage(f"unknown htype {kind!r}")


def decode(parts: list[bytes]) -> Start | Frame | End:
    """Decode one ZeroMQ message (its parts) of either format."""
    if not parts:
        raise MalformedMessage("empty message")
    first = bytes(parts[0][:1])
    if first == b"{":
        return _decode_simple(parts)
    if len(parts) != 1:
        raise MalformedMessage(f"{len(parts)}-part message that is not the simple format")
    return _decode_stream2(bytes(parts[0]))


# -- encoding (replay) ----------------------------------------------------------------------------------------------
def encode_simple(message: Start | Frame | End) -> list[bytes]:
    """The parts of ``message`` in the simple format."""
    if isinstance(message, Start):
        header = {"htype": "braggsieve-start-1", "series": message.series, **message.info}
        if message.shape is not None:
            header["shape"] = list(message.shape)
        if message.dtype is not None:
            header["dtype"] = np.dtype(message.dtype).str
        return [json.dumps(header).encode()]
    if isinstance(message, Frame):
        data = np.ascontiguousarray(message.data)
        header = {"htype": "braggsieve-frame-1", "series": message.series, "frame": message.frame,
                  "shape": list(data.shape), "dtype": data.dtype.str}
        return [json.dumps(header).encode(), data.tobytes()]
    return [json.dumps({"htype": "braggsieve-end-1", "series": message.series}).encode()]


def encode_stream2(message: Start | Frame | End, compression: str = "bslz4", series_id: int = 1) -> list[bytes]:
    """The one part of ``message`` as a Stream V2 CBOR map; ``compression``: "bslz4", "lz4" or "none"."""
    import cbor2

    common = {"series_id": series_id, "series_unique_id": message.series}
    if isinstance(message, Start):
        ny, nx = message.shape
        body = {"type": "start", **common, "channels": ["threshold_1"], "image_size_x": nx, "image_size_y": ny,
                "number_of_images": message.info.get("nframes", 0)}
        if message.saturation is not None:
            body["saturation_value"] = int(message.saturation)
    elif isinstance(message, Frame):
        data = np.ascontiguousarray(message.data)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        raw: Any = data.tobytes()
        if compression in ("bslz4", "lz4"):
            raw = cbor2.CBORTag(COMPRESSION_TAG, [compression, data.dtype.itemsize if compression == "bslz4" else 0,
                                                  _codec().compress(compression, data)])
        elif compression != "none":
            raise ValueError(f"unknown compression {compression!r}")
        array = cbor2.CBORTag(MULTI_DIM_TAG, [list(data.shape), cbor2.CBORTag(typed_array_tag(data.dtype), raw)])
        body = {"type": "image", **common, "image_id": message.frame, "data": {"threshold_1": array},
                "real_time": [1, 1], "start_time": [message.frame, 1], "stop_time": [message.frame + 1, 1]}
    else:
        body = {"type": "end", **common}
    return [cbor2.dumps(body)]
