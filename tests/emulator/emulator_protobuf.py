"""Just enough of the Kubernetes protobuf encoding to read a Namespace.

`kubectl create namespace NAME` sends its body as application/vnd.kubernetes.protobuf
(client-go's typed clients do). Responses are always JSON, which those clients
accept too. Other kinds in protobuf are refused with 415 by the caller: decoding
a Pod would need the whole generated schema. Pure functions.
"""

__all__ = ["ProtobufError", "decode_namespace"]

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf):
    """(field number, value) pairs: int for varints, bytes for length-delimited."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated field %d" % num)
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ProtobufError("unsupported wire type %d" % wire)
        yield num, value


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else ""


def _map_entry(value):
    key = val = ""
    for num, v in _fields(value):
        if num == 1:
            key = _text(v)
        elif num == 2:
            val = _text(v)
    return key, val


def _object_meta(buf):
    meta = {}
    for num, v in _fields(buf):
        if num == 1:
            meta["name"] = _text(v)
        elif num == 2:
            meta["generateName"] = _text(v)
        elif num == 3:
            meta["namespace"] = _text(v)
        elif num == 11:
            k, val = _map_entry(v)
            meta.setdefault("labels", {})[k] = val
        elif num == 12:
            k, val = _map_entry(v)
            meta.setdefault("annotations", {})[k] = val
        elif num == 14:
            meta.setdefault("finalizers", []).append(_text(v))
    return meta


def envelope(body):
    """(apiVersion, kind, raw) of a runtime.Unknown with the k8s magic prefix."""
    if not body.startswith(MAGIC):
        raise ProtobufError("no k8s protobuf magic")
    api_version = kind = ""
    raw = b""
    for num, v in _fields(body[len(MAGIC):]):
        if num == 1 and isinstance(v, bytes):
            for n2, v2 in _fields(v):
                if n2 == 1:
                    api_version = _text(v2)
                elif n2 == 2:
                    kind = _text(v2)
        elif num == 2:
            raw = v
    return api_version, kind, raw


def decode_namespace(body):
    api_version, kind, raw = envelope(body)
    if kind != "Namespace":
        raise ProtobufError("kind %s" % (kind or "(none)"))
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for num, v in _fields(raw):
        if num == 1:
            obj["metadata"] = _object_meta(v)
        elif num == 2:
            fins = [_text(f) for n, f in _fields(v) if n == 1]
            obj["spec"] = {"finalizers": fins} if fins else {}
    return obj
