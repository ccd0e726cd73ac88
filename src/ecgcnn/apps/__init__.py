"""Console scripts: thin ``@hydra.main`` wrappers around plain functions."""

from __future__ import annotations

import re
from pathlib import Path

from ecgcnn.atomic import write_json  # noqa: F401  (re-exported for the apps)
from ecgcnn.config import CONFIG_DIR  # noqa: F401


def output_dir() -> Path:
    """The Hydra run's output directory (we never change the working directory)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


#: Config keys (last dotted component) that hold record names: ``record``, ``data.records``,
#: ``split.train_records``, ...
RECORD_KEYS: tuple[str, ...] = (
    "record",
    "records",
    "train_records",
    "test_records",
    "common_records",
    "library_records",
)

_OVERRIDE = re.compile(
    r"^(?P<key>[~+]{0,2}(?P<path>[A-Za-z_][\w.]*)(?:@[\w.]*)?)=(?P<value>.*)$", re.DOTALL
)
_KEEP = re.compile(r"^(?:null|['\"].*['\"]|\$\{.*\}|\w+\(.*\))$", re.DOTALL)


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, parentheses, braces and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _quote_value(value: str) -> str:
    """Quote every bare element of an override value (a scalar, a list, a sweep ``a,b``)."""
    parts = _split_top(value)
    if len(parts) > 1:
        return ",".join(_quote_value(p) for p in parts)
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        inner = v[1:-1]
        return (
            "[" + ",".join(_quote_value(p) for p in _split_top(inner)) + "]" if inner.strip() else v
        )
    if not v or _KEEP.match(v) or ("'" in v and '"' in v):
        return value
    return f'"{v}"' if "'" in v else f"'{v}'"


def quote_record_overrides(argv: list[str], keys: tuple[str, ...] = RECORD_KEYS) -> list[str]:
    """Command-line overrides with record names quoted, so Hydra keeps them as strings.

    Hydra's override grammar reads ``record=118e24`` as the float ``1.18e+26`` (and
    ``118e06`` as ``118000000.0``) before any schema sees it; quoted, it stays ``'118e24'``.
    Every bare element of a value whose key's last component is in ``keys`` is quoted: scalars,
    lists (``records=[118e24,100]``) and sweeps (``record=100,118e24``). Quoted elements,
    ``null``, ``${...}`` interpolations, sweep functions (``range(...)``) and every other
    argument are left as they are.

    Examples
    --------
    >>> quote_record_overrides(["record=118e24", "records=[100,118e24]", "trainer.seed=1"])
    ["record='118e24'", "records=['100','118e24']", 'trainer.seed=1']
    """
    out = []
    for arg in argv:
        m = _OVERRIDE.match(arg)
        if m and m.group("path").rsplit(".", 1)[-1] in keys:
            arg = f"{m.group('key')}={_quote_value(m.group('value'))}"
        out.append(arg)
    return out


def string_overrides(*keys: str):
    """Decorator for a console script's ``main``, placed above ``@hydra.main``: record names on
    the command line reach the app as strings (see :func:`quote_record_overrides`; default keys
    :data:`RECORD_KEYS`)."""
    import functools
    import sys

    names = tuple(keys) or RECORD_KEYS

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            sys.argv[1:] = quote_record_overrides(sys.argv[1:], names)
            return func(*args, **kwargs)

        wrapper.string_override_keys = names  # lets a test check that every app has it
        return wrapper

    return decorate
