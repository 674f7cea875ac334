"""Label and field selectors, parsed the way k8s.io/apimachinery parses them.

Owned by the emulator's request threads; every function here is pure. A parse
error raises SelectorError, which the server turns into a 400 BadRequest Status.
"""

import re

__all__ = ["SelectorError", "parse_label_selector", "parse_field_selector",
           "selector_from_match_labels"]


class SelectorError(ValueError):
    pass


_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_NAME_RE = re.compile(r"^" + _NAME + r"$")
_PREFIX_RE = re.compile(r"^" + _DNS_SUBDOMAIN + r"$")

# Lexer tokens, as in labels/selector.go.
_SPECIAL = "=!(),<>"


def _check_key(key):
    if "/" in key:
        prefix, _, name = key.partition("/")
        if not prefix or len(prefix) > 253 or not _PREFIX_RE.match(prefix):
            raise SelectorError(
                'unable to parse requirement: key: Invalid value: "%s": prefix part '
                "a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.'" % key)
    else:
        name = key
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        raise SelectorError(
            'unable to parse requirement: key: Invalid value: "%s": name part must '
            "consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character" % key)


def _check_value(value):
    if value == "":
        return
    if len(value) > 63 or not _NAME_RE.match(value):
        raise SelectorError(
            'unable to parse requirement: values[0][%s]: Invalid value: "%s": a valid '
            "label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
            % (value, value))


def _lex(text):
    """Yield (kind, text) tokens; kind is 'id', 'op', or a punctuation char."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "(),":
            out.append((c, c))
            i += 1
            continue
        if c in "=!<>":
            two = text[i:i + 2]
            if two in ("==", "!="):
                out.append(("op", two))
                i += 2
            else:
                out.append(("op", c))
                i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        word = text[i:j]
        if word in ("in", "notin"):
            out.append(("op", word))
        else:
            out.append(("id", word))
        i = j
    out.append(("end", ""))
    return out


def parse_label_selector(text):
    """Return a predicate over a labels dict (None means no labels).

    Supports equality (=, ==, !=), set-based (in, notin), existence (key, !key)
    and the numeric gt/lt (>, <); requirements are ANDed by commas.
    """
    text = text or ""
    if not text.strip():
        return lambda labels: True
    toks = _lex(text)
    pos = 0
    reqs = []

    def peek():
        return toks[pos]

    def take():
        nonlocal pos
        t = toks[pos]
        pos += 1
        return t

    while True:
        kind, val = take()
        if kind == "op" and val == "!":
            k2, key = take()
            if k2 != "id":
                raise SelectorError("unable to parse requirement: found '%s', expected: identifier" % key)
            _check_key(key)
            reqs.append(("notexists", key, None))
        elif kind == "id":
            key = val
            _check_key(key)
            k2, op = peek()
            if k2 in ("end", ","):
                reqs.append(("exists", key, None))
            elif k2 == "op" and op in ("=", "==", "!="):
                take()
                k3, value = peek()
                if k3 == "id":
                    take()
                elif k3 in ("end", ","):
                    value = ""
                else:
                    raise SelectorError("unable to parse requirement: found '%s', expected: identifier" % value)
                _check_value(value)
                reqs.append(("ne" if op == "!=" else "eq", key, value))
            elif k2 == "op" and op in ("in", "notin"):
                take()
                if take()[0] != "(":
                    raise SelectorError("unable to parse requirement: found '%s', expected: '('" % peek()[1])
                values = []
                while True:
                    k3, v = peek()
                    if k3 == "id":
                        take()
                        _check_value(v)
                        values.append(v)
                        k3, v = peek()
                    elif k3 in (",", ")"):
                        values.append("")  # an empty value, as "a in (,x)" allows
                    else:
                        raise SelectorError("unable to parse requirement: found '%s', expected: ',', ')' or identifier" % v)
                    k3, v = take()
                    if k3 == ")":
                        break
                    if k3 != ",":
                        raise SelectorError("unable to parse requirement: found '%s', expected: ',' or ')'" % v)
                if values == [""]:
                    raise SelectorError("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
                reqs.append((op, key, frozenset(values)))
            elif k2 == "op" and op in (">", "<"):
                take()
                k3, value = take()
                try:
                    number = int(value)
                except ValueError:
                    raise SelectorError("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer") from None
                reqs.append(("gt" if op == ">" else "lt", key, number))
            else:
                raise SelectorError("unable to parse requirement: found '%s', expected: in, notin, =, ==, !=, gt, lt" % op)
        else:
            raise SelectorError("unable to parse requirement: found '%s', expected: !, identifier, or 'end of string'" % val)
        kind, val = take()
        if kind == "end":
            break
        if kind != ",":
            raise SelectorError("found '%s', expected: ',' or 'end of string'" % val)

    def match(labels):
        labels = labels or {}
        for op, key, value in reqs:
            present = key in labels
            have = labels.get(key)
            if op == "exists" and not present:
                return False
            if op == "notexists" and present:
                return False
            if op == "eq" and (not present or have != value):
                return False
            if op == "ne" and present and have == value:
                return False
            if op == "in" and (not present or have not in value):
                return False
            if op == "notin" and present and have in value:
                return False
            if op in ("gt", "lt"):
                try:
                    number = int(have) if present else None
                except ValueError:
                    number = None
                if number is None:
                    return False
                if op == "gt" and not number > value:
                    return False
                if op == "lt" and not number < value:
                    return False
        return True

    return match


def _split_unescaped(text, sep):
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value):
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            if value[i + 1] not in "\\,=":
                raise SelectorError("invalid field selector: invalid escape sequence: \\%s" % value[i + 1])
            out.append(value[i + 1])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_field_selector(text, getters):
    """Return a predicate over an object.

    getters maps each supported field label to a function obj -> str (the same
    list a real API server has for the resource); other labels are a 400.
    """
    text = text or ""
    if not text.strip():
        return lambda obj: True
    reqs = []
    for term in _split_unescaped(text, ","):
        term = term.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(term, op)
            if idx >= 0:
                field, value = term[:idx].strip(), _unescape(term[idx + len(op):])
                break
        else:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, term))
        if field not in getters:
            raise SelectorError('field label not supported: %s' % field)
        reqs.append((op != "!=", getters[field], value))

    def match(obj):
        for want_equal, getter, value in reqs:
            if (getter(obj) == value) != want_equal:
                return False
        return True

    return match


def _find_unescaped(text, op):
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            # "!=" must not be read as "=" preceded by "!".
            if op == "=" and i > 0 and text[i - 1] == "!":
                i += 1
                continue
            return i
        i += 1
    return -1


def selector_from_match_labels(selector):
    """The string form of a LabelSelector (matchLabels + matchExpressions)."""
    parts = ["%s=%s" % kv for kv in sorted((selector or {}).get("matchLabels", {}).items())]
    for expr in (selector or {}).get("matchExpressions", []) or []:
        op = expr.get("operator")
        key = expr.get("key")
        vals = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append("%s in (%s)" % (key, vals))
        elif op == "NotIn":
            parts.append("%s notin (%s)" % (key, vals))
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append("!" + key)
    return ",".join(parts)
