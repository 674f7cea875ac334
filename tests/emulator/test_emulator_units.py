#!/usr/bin/env python3
"""Unit tests of the emulator's pure parts: selectors, patches, protobuf.

They run with test_emulator.py (which imports them), or alone:
    python3 tests/emulator/test_emulator_units.py
"""

import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from emulator_patch import json_patch, merge_patch, strategic_merge_patch  # noqa: E402
from emulator_protobuf import ProtobufError, decode_namespace  # noqa: E402
from emulator_selectors import SelectorError, parse_field_selector, parse_label_selector  # noqa: E402


class SelectorUnitTest(unittest.TestCase):
    def test_label_selector(self):
        labels = {"app": "ukko", "tier": "x", "n": "10"}
        true = ["app=ukko", "app==ukko", "app!=other", "missing!=x", "app in (ukko, other)", "tier notin (y)",
                "missing notin (x)", "app", "!missing", "app=ukko,tier=x", "n>9", "n<11", "", "  "]
        false = ["app=other", "app!=ukko", "app in (other)", "tier notin (x)", "missing", "!app",
                 "app=ukko,tier=y", "n>10", "missing>1", "missing in (x)"]
        for s in true:
            self.assertTrue(parse_label_selector(s)(labels), s)
        for s in false:
            self.assertFalse(parse_label_selector(s)(labels), s)
        self.assertTrue(parse_label_selector("app.kubernetes.io/name=mesh")({"app.kubernetes.io/name": "mesh"}))
        self.assertTrue(parse_label_selector("a=")({"a": ""}))
        for bad in ("app in (", "app in ()", "=x", "app=ukko,", "a b", "app=(x)", "n>x", "-bad=1", "a=b c"):
            with self.assertRaises(SelectorError, msg=bad):
                parse_label_selector(bad)

    def test_field_selector(self):
        fields = {"status.phase": lambda o: o["phase"], "metadata.name": lambda o: o["name"]}
        pod = {"phase": "Running", "name": "a,b"}
        self.assertTrue(parse_field_selector("status.phase=Running", fields)(pod))
        self.assertTrue(parse_field_selector("status.phase!=Pending,metadata.name=a\\,b", fields)(pod))
        self.assertFalse(parse_field_selector("status.phase==Pending", fields)(pod))
        with self.assertRaises(SelectorError):
            parse_field_selector("spec.other=x", fields)
        with self.assertRaises(SelectorError):
            parse_field_selector("status.phase", fields)


class PatchUnitTest(unittest.TestCase):
    def test_merge_patch(self):
        doc = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
        self.assertEqual(merge_patch(doc, {"a": {"b": None, "d": 3}, "l": [3]}), {"a": {"c": 2, "d": 3}, "l": [3]})
        self.assertEqual(doc, {"a": {"b": 1, "c": 2}, "l": [1, 2]}, "the input is not changed")

    def test_strategic_merge_patch(self):
        pod = {"spec": {"containers": [{"name": "a", "image": "a:1", "ports": [{"containerPort": 1}]},
                                       {"name": "b", "image": "b:1"}]},
               "metadata": {"finalizers": ["x"]}}
        orig = copy.deepcopy(pod)
        out = strategic_merge_patch(pod, {"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c"}]},
                                          "metadata": {"finalizers": ["y"]}})
        self.assertEqual([(c["name"], c["image"]) for c in out["spec"]["containers"]], [("a", "a:1"), ("b", "b:2"), ("c", "c")])
        self.assertEqual(out["metadata"]["finalizers"], ["x", "y"])
        out = strategic_merge_patch(pod, {"spec": {"containers": [{"name": "a", "$patch": "delete"}],
                                                   "$setElementOrder/containers": [{"name": "b"}]}})
        self.assertEqual([c["name"] for c in out["spec"]["containers"]], ["b"])
        out = strategic_merge_patch(pod, {"spec": {"$patch": "replace", "containers": []}})
        self.assertEqual(out["spec"], {"containers": []})
        self.assertEqual(pod, orig, "the input is not changed")

    def test_json_patch(self):
        doc = {"a": [1, 2], "b": {"c": 1}}
        out = json_patch(doc, [{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/b/c", "value": 2},
                               {"op": "move", "from": "/b", "path": "/d"}, {"op": "test", "path": "/d/c", "value": 2},
                               {"op": "copy", "from": "/a/0", "path": "/e"}, {"op": "remove", "path": "/a/0"}])
        self.assertEqual(out, {"a": [2, 3], "d": {"c": 2}, "e": 1})
        self.assertEqual(doc, {"a": [1, 2], "b": {"c": 1}})


def _pb_field(num, value):
    """Encode one length-delimited (bytes/str) protobuf field."""
    data = value.encode() if isinstance(value, str) else value
    out, key = bytearray(), (num << 3) | 2
    for n in (key, len(data)):
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                break
    return bytes(out) + data


class ProtobufUnitTest(unittest.TestCase):
    def test_namespace(self):
        meta = _pb_field(1, "team-a") + _pb_field(11, _pb_field(1, "env") + _pb_field(2, "test"))
        raw = _pb_field(1, meta) + _pb_field(2, b"")
        body = b"k8s\x00" + _pb_field(1, _pb_field(1, "v1") + _pb_field(2, "Namespace")) + _pb_field(2, raw) \
            + _pb_field(3, "") + _pb_field(4, "")
        self.assertEqual(decode_namespace(body), {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": "team-a", "labels": {"env": "test"}},
                                                  "spec": {}})
        with self.assertRaises(ProtobufError):
            decode_namespace(b"k8s\x00" + _pb_field(1, _pb_field(1, "v1") + _pb_field(2, "Pod")))
        with self.assertRaises(ProtobufError):
            decode_namespace(b"{}")
        with self.assertRaises(ProtobufError):
            decode_namespace(b"k8s\x00\x0a\xff")


if __name__ == "__main__":
    unittest.main()
