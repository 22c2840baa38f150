"""A Griffe extension of the documentation build: the docstrings' Sphinx roles become links, and
grouped parameters become one row each.

The docstrings cross-reference with Sphinx roles (``:func:`smooth```, ``:class:`~a.b.C```,
``:meth:`.Trainer.save```), which mkdocstrings' Google style leaves as raw text. Before the
docstrings are parsed, each role is rewritten here into an autorefs cross-reference to the
object's canonical path, resolved as Sphinx resolves it: against the enclosing class, the
object's module (its imports included), the packages above it and then the whole package; a
leading dot (``.name``) looks for the one object whose path ends so. The link text follows
Sphinx: ``~`` keeps the last component, a leading dot is dropped.

A reference to an object the API page renders becomes a link; one to an object the site does not
render (a private helper, the experiment layer) stays plain code with its full path as a tooltip
(an *optional* autoref). A name that resolves to no object at all is a warning, so the strict
build fails on a mistyped reference.

An entry of an ``Args:`` or ``Attributes:`` section that names several parameters at once
(``steps, rule: quadrature``) is split into one entry per name with the same description, so each
gets its own type and default from the signature.

The source is left as it is: the rewrite happens in the build only.
"""

from __future__ import annotations

import builtins
import importlib.util
import re

import griffe

logger = griffe.get_logger("griffe_roles")

ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|exc|obj|const):`([^`]+)`")
SECTION = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Attributes|Other Parameters|"
    r"Keyword Args|Keyword Arguments):\s*$"
)
LITERAL = re.compile(r"(``.+?``)", re.S)  # an inline literal: a role inside it is shown as is
MODULE_LEVEL = {"func", "class", "mod", "data", "exc", "const"}
GROUPED = re.compile(r"^(\s+)(\*{0,2}\w+(?:,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(\s.*|)$")


def split_grouped(text: str) -> str:
    """Each ``a, b: description`` entry of a parameters or attributes section, with its
    continuation lines, repeated once per name."""
    lines = text.split("\n")
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = SECTION.match(line)
        if header:
            section_indent = len(header[1])
            out.append(line)
            i += 1
            continue
        stripped = len(line) - len(line.lstrip())
        if section_indent is not None and line.strip() and stripped <= section_indent:
            section_indent = None  # the section ended
        m = GROUPED.match(line) if section_indent is not None else None
        if not m or len(m[1]) <= section_indent:
            out.append(line)
            i += 1
            continue
        indent, names, annotation, description = m[1], m[2], m[3] or "", m[4]
        body = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():  # a blank line ends the entry, not its body
            i -= 1
            body.pop()
        for name in re.split(r",\s*", names):
            out += [f"{indent}{name}{annotation}:{description}", *body]
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles and splits grouped entries of every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        self.collection = loader.modules_collection
        self.by_suffix: dict[str, list[str]] | None = None
        for obj in _walk(pkg):
            if obj.docstring is not None:
                parts = LITERAL.split(split_grouped(obj.docstring.value))
                for i in range(0, len(parts), 2):  # the text between the literals
                    parts[i] = ROLE.sub(lambda m, o=obj: self.reference(m, o), parts[i])
                obj.docstring.value = "".join(parts)

    def reference(self, match: re.Match, obj: griffe.Object) -> str:
        role, content = match[1], re.sub(r"\s*\n\s*", "", match[2].strip())  # a wrapped one
        explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", content)
        target = explicit[2] if explicit else content
        tilde, target = target.startswith("~"), target.lstrip("~")
        specific, target = target.startswith("."), target.lstrip(".")
        if explicit:
            title = explicit[1]
        elif tilde:
            title = target.rpartition(".")[2]
        else:
            title = target
        found = self.resolve(target, obj, specific, role)
        if found is None and _external(target):  # the standard library, torch: plain code
            return f"`{title}`"
        if found is None:
            logger.warning(
                "%s: :%s:`%s` names no object of the package (%s)",
                obj.path,
                role,
                content,
                obj.relative_filepath,
            )
            return f"`{title}`"
        return f'<autoref identifier="{found}" optional><code>{title}</code></autoref>'

    def resolve(self, target: str, obj: griffe.Object, specific: bool, role: str) -> str | None:
        """The canonical path of the object ``target`` names from inside ``obj``, or None."""
        scopes = []
        scope: griffe.Object | None = obj
        while scope is not None:
            if not scope.is_function and not scope.is_attribute:
                scopes.append(scope.path)
            scope = scope.parent
        candidates = [f"{s}.{target}" for s in scopes]
        if not specific:
            candidates.append(target)
        for path in candidates:
            found = self.lookup(path)
            if found:
                return found
        if specific or "." not in target:  # Sphinx's fuzzy search: the one path ending so
            paths = self.suffixes().get(target.rpartition(".")[2], [])
            ends = [p for p in paths if p.endswith("." + target)]
            if len(ends) > 1 and role in MODULE_LEVEL:  # a function, not a method of that name
                ends = [p for p in ends if self.collection[p].parent.is_module]
            if len(ends) == 1:
                return ends[0]
        return None

    def lookup(self, path: str) -> str | None:
        try:
            found = self.collection[path]
        except Exception:  # KeyError, or an alias whose target is not loaded  # noqa: BLE001
            return None
        try:
            return found.final_target.path if found.is_alias else found.path
        except Exception:  # an alias to another package (torch, numpy): not ours  # noqa: BLE001
            return None

    def suffixes(self) -> dict[str, list[str]]:
        if self.by_suffix is None:
            self.by_suffix = {}
            for module in list(self.collection.members.values()):
                for found in _walk(module):
                    self.by_suffix.setdefault(found.name, []).append(found.path)
        return self.by_suffix


def _external(target: str) -> bool:
    """Whether ``target`` is a builtin or in an importable package other than ours."""
    first = target.partition(".")[0]
    if hasattr(builtins, first):
        return True
    try:
        return first != "smoothstab" and importlib.util.find_spec(first) is not None
    except (ImportError, ValueError):
        return False


def _walk(obj: griffe.Object):
    """``obj`` and the objects defined in it (not the names it imports)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)
