"""Every public definition of the core says what it is: each module of engine/ starts with a
docstring, and so does every public (no leading underscore) module-level function and class and
every public method of a public class, read from the source with `ast` (nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(node: ast.stmt) -> bool:
    return isinstance(node, Definition) and not node.name.startswith("_")


def undocumented(source: str) -> list[str]:
    """Names of the public definitions in `source` without a docstring, `Class.method` for
    methods, "<module>" for a non-empty module without one; in source order."""
    tree = ast.parse(source)
    missing = []
    if tree.body and ast.get_docstring(tree) is None:
        missing.append("<module>")
    for node in tree.body:
        if not _public(node):
            continue
        assert isinstance(node, Definition)
        if ast.get_docstring(node) is None:
            missing.append(node.name)
        if isinstance(node, ast.ClassDef):
            missing.extend(
                f"{node.name}.{member.name}"
                for member in node.body
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef)
                and not member.name.startswith("_")
                and ast.get_docstring(member) is None
            )
    return missing


def modules() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_undocumented_finds_public_functions_classes_and_methods_without_a_docstring() -> None:
    source = '''"""A module."""
def documented():
    """Yes."""
def bare(): pass
def _private(): pass
class Book:
    def add(self): pass
    def remove(self):
        """Yes."""
    def _internal(self): pass
    def __len__(self): return 0
class _Hidden:
    def add(self): pass
'''
    assert undocumented(source) == ["bare", "Book", "Book.add"]
    assert undocumented("def f():\n    '''Yes.'''\n") == ["<module>"]
    assert undocumented("") == []


def test_every_public_definition_in_the_core_has_a_docstring() -> None:
    missing = {
        path.relative_to(ENGINE).as_posix(): names
        for path in modules()
        if (names := undocumented(path.read_text()))
    }
    assert not missing, f"public definitions without a docstring: {missing}"
