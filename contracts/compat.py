"""Would a schema change break an existing consumer or producer? A pure comparison of two JSON Schemas.

Breaking (needs a new subject version, e.g. `case.v2.<event>.<street_code>`, run side by side with v1):
- a field removed (a consumer reading it finds nothing);
- a field retyped (its set of JSON types or its format changed);
- an enum narrowed (a value someone sends or handles is no longer allowed);
- a field newly required (a producer of the old shape is now refused).
Compatible: an optional field added, an enum widened, descriptions and examples changed.

Nested objects (through `$ref` into `$defs`, `anyOf`, array `items` and map `additionalProperties`) are
compared field by field; a path such as `lead_unit.role` names the place of each change.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


class _Resolver:
    """Follows local `#/$defs/...` references of one root schema."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def __call__(self, node: Schema) -> Schema:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 32:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are compared, not {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            # Sibling keywords beside $ref (description ...) do not change the shape.
            node = target
            seen += 1
        return node


def _variants(node: Schema, resolve: _Resolver) -> list[Schema]:
    """The alternatives of a schema (anyOf/oneOf flattened), each resolved."""
    node = resolve(node)
    for key in ("anyOf", "oneOf"):
        if key in node:
            out: list[Schema] = []
            for sub in node[key]:
                out.extend(_variants(sub, resolve))
            return out
    return [node]


def _types(node: Schema, resolve: _Resolver) -> set[str]:
    """The JSON types a schema admits, with the format where one is given (e.g. `string:date-time`)."""
    out: set[str] = set()
    for v in _variants(node, resolve):
        if "const" in v:
            out.add(_JSON_TYPE.get(type(v["const"]), "object"))
            continue
        if "enum" in v and "type" not in v:
            out.update(_JSON_TYPE.get(type(x), "object") for x in v["enum"])
            continue
        t = v.get("type")
        names = t if isinstance(t, list) else [t] if t else ["any"]
        for name in names:
            fmt = v.get("format") if name == "string" else None
            out.add(f"{name}:{fmt}" if fmt else name)
    return out


def _enum(node: Schema, resolve: _Resolver) -> set[Any] | None:
    """The allowed values if every alternative is an enum or const (None: not an enumeration)."""
    values: set[Any] = set()
    for v in _variants(node, resolve):
        if "enum" in v:
            values.update(v["enum"])
        elif "const" in v:
            values.add(v["const"])
        elif v.get("type") == "null":
            values.add(None)
        else:
            return None
    return values


def _object(node: Schema, resolve: _Resolver) -> Schema | None:
    """The object alternative of a schema, if it has one with properties."""
    for v in _variants(node, resolve):
        if v.get("type") == "object" and "properties" in v:
            return v
    return None


def _sub(node: Schema, resolve: _Resolver, key: str) -> Schema | None:
    for v in _variants(node, resolve):
        if isinstance(v.get(key), dict):
            return v[key]
    return None


def _compare(old: Schema, new: Schema, ro: _Resolver, rn: _Resolver, path: str, out: list[str]) -> None:
    where = path or "(message)"
    old_types, new_types = _types(old, ro), _types(new, rn)
    if "any" not in old_types and old_types != new_types:
        out.append(f"{where}: retyped from {'|'.join(sorted(old_types))} to {'|'.join(sorted(new_types))}")
        return
    old_enum, new_enum = _enum(old, ro), _enum(new, rn)
    if old_enum is not None:
        if new_enum is None:
            pass  # widened to any value of the same type: compatible
        elif missing := old_enum - new_enum:
            out.append(f"{where}: enum narrowed, no longer allows {sorted(missing, key=repr)}")
    old_obj, new_obj = _object(old, ro), _object(new, rn)
    if old_obj is not None and new_obj is not None:
        _compare_object(old_obj, new_obj, ro, rn, path, out)
    for key, suffix in (("items", "[]"), ("additionalProperties", ".*")):
        o, n = _sub(old, ro, key), _sub(new, rn, key)
        if o is not None and n is not None:
            _compare(o, n, ro, rn, f"{path}{suffix}", out)


def _compare_object(old: Schema, new: Schema, ro: _Resolver, rn: _Resolver, path: str, out: list[str]) -> None:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
    prefix = f"{path}." if path else ""
    for name in sorted(old_props):
        if name not in new_props:
            out.append(f"{prefix}{name}: removed")
            continue
        _compare(old_props[name], new_props[name], ro, rn, f"{prefix}{name}", out)
    for name in sorted(new_req - old_req):
        if name in old_props:
            out.append(f"{prefix}{name}: was optional, now required")
        else:
            out.append(f"{prefix}{name}: new required field")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What in `new` breaks a consumer or producer written against `old`; empty when compatible."""
    out: list[str] = []
    _compare(old, new, _Resolver(old), _Resolver(new), "", out)
    return out
