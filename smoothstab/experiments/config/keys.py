"""Every config key with its type, default and meaning, read from the config dataclasses.

A key's meaning is the docstring written under its field in
:mod:`~smoothstab.experiments.config.tables` (an attribute docstring, which API documentation tools
read too). :func:`config_keys` reads them back from the source with :mod:`ast` and pairs them with
each field's annotation and default, so ``smoothstab config`` (:func:`format_config`, a commented
TOML file) and the documentation's page of keys (:func:`keys_markdown`) print one text, kept in one
place.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any, get_type_hints

from smoothstab.experiments.config.parse import FREE, to_toml
from smoothstab.experiments.config.tables import ExperimentConfig, ModelSpec

SPECS = "models.specs"  # the one array of tables: its entries' keys are listed apart


@dataclass(frozen=True)
class Key:
    """One config key: ``name`` dotted (``train.epochs``), ``type`` as annotated, the
    ``default``, the ``value`` in the config asked about, ``help`` (the field's docstring), and
    ``free`` when no result depends on it (a run directory may be resumed with another value)."""

    name: str
    type: str
    default: Any
    value: Any
    help: str
    free: bool

    @property
    def section(self) -> str:
        """The table the key is in (``""``: the top level)."""
        return self.name.rpartition(".")[0]


REQUIRED = object()  # the default of a field without one (ModelSpec.name)


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstring of each field of the dataclass ``cls``, dedented."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def config_keys(cfg: ExperimentConfig | None = None) -> list[Key]:
    """Every key of a config, table by table in file order, with its value in ``cfg`` (default:
    the defaults). The entries of ``models.specs`` come last, named ``models.specs[].KEY``,
    their value that of ``cfg``'s first spec (:data:`REQUIRED` without one)."""
    cfg = cfg or ExperimentConfig()
    keys = _keys(type(cfg), cfg, "")
    first = cfg.models.specs[0] if cfg.models.specs else None
    return keys + _keys(ModelSpec, first, f"{SPECS}[].")


def _keys(cls: type, obj: Any, prefix: str) -> list[Key]:
    docs, written, hints = field_docs(cls), inspect.get_annotations(cls), get_type_hints(cls)
    scalars, tables = [], []
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name) if obj is not None else REQUIRED
        if dataclasses.is_dataclass(hints[f.name]):
            tables += _keys(hints[f.name], value, f"{prefix}{f.name}.")
            continue
        default = REQUIRED if f.default is dataclasses.MISSING else f.default
        help_text = docs.get(f.name)
        if help_text is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a config key without a docstring")
        key = Key(
            prefix + f.name, written[f.name], default, value, help_text, bool(f.metadata.get(FREE))
        )
        scalars.append(key)
    return scalars + tables


def plain(text: str) -> str:
    """Docstring markup as plain text: ````x```` -> ```x```, ``:func:`~.a.b``` -> ```b```."""
    text = re.sub(r":\w+:`~?\.?([\w.]+)`", lambda m: f"`{m[1].rpartition('.')[2]}`", text)
    return text.replace("``", "`")


def toml_value(value: Any) -> str:
    """A value as TOML writes it (``none`` where TOML has no null: ``--set`` reads it so)."""
    if value is None:
        return "none"
    if value is REQUIRED:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "{" + to_toml(value).strip().replace("\n", ", ") + "}"
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return to_toml(_One(value)).strip().removeprefix("v = ")


@dataclass(frozen=True)
class _One:
    v: Any


def format_config(cfg: ExperimentConfig, title: str) -> str:
    """``cfg`` as a TOML file that documents itself: every key with its value, each preceded by
    comments giving its type, its default where the value differs, and its meaning. An unset
    optional key is commented out (TOML has no null); the given models come last, as
    ``[[models.specs]]`` tables. Read back, the file is ``cfg`` again."""
    lines = [f"# {title}", "# Every key with its type, its default where it differs, its meaning."]
    section = ""
    for key in config_keys(cfg):
        if key.section != section:
            section = key.section
            spec = section == f"{SPECS}[]"
            lines += ["", f"# Each [[{SPECS}]] table:" if spec else f"[{section}]"]
        lines += _comment(key, spec=section == f"{SPECS}[]")
        name = key.name.rpartition(".")[2]
        if section == f"{SPECS}[]":
            continue
        if key.value is None:
            lines += [f"# {name} = none", ""]
        elif key.name == SPECS and key.value:
            lines += [f"# {name}: the [[{SPECS}]] tables at the end", ""]
        else:
            lines += [f"{name} = {toml_value(key.value)}", ""]
    for spec in cfg.models.specs:
        lines += ["", f"[[{SPECS}]]", to_toml(spec).rstrip()]
    return "\n".join(lines).rstrip() + "\n"


def _comment(key: Key, *, spec: bool) -> list[str]:
    """The comment lines above a key: name, type, default (where the value differs), help."""
    shown = key.value != key.default or spec
    about = f"{key.name.rpartition('.')[2]}: {key.type}"
    about += f"; default {toml_value(key.default)}" if shown else ""
    about += "; changes no result" if key.free else ""
    wrap = {"width": 100, "initial_indent": "#   ", "subsequent_indent": "#   "}
    return textwrap.wrap(about, **{**wrap, "initial_indent": "# "}) + textwrap.wrap(
        plain(key.help), **wrap
    )


def keys_markdown() -> str:
    """Every key of every table as Markdown tables of name, type, default and meaning."""
    out, section = [], None
    for key in config_keys():
        if key.section != section:
            section = key.section
            title = {"": "Top level", f"{SPECS}[]": f"Each `[[{SPECS}]]` entry"}.get(
                section, f"`[{section}]`"
            )
            out += [
                "",
                f"### {title}",
                "",
                "| key | type | default | meaning |",
                "| --- " * 4 + "|",
            ]
        free = " *Changes no result: may differ on a resume.*" if key.free else ""
        cells = [
            f"`{key.name.rpartition('.')[2]}`",
            f"`{key.type}`",
            f"`{toml_value(key.default)}`",
            plain(key.help).replace("\n", " ") + free,
        ]
        out.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(out).strip() + "\n"


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` escaped outside code spans (inside them it is literal)."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))
