"""Optional tree-sitter splitting for non-Python code: used only when a grammar package is importable
(`tree_sitter_language_pack`, or one `tree_sitter_<language>` package per language)."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from mmrag.ingest.chunking import Lines
from mmrag.ingest.code_chunks import Chunk, module_chunks, summary_chunk, symbol_chunk
from mmrag.ingest.spec import IngestCfg

# language -> (grammar module, function returning the language pointer)
GRAMMAR_MODULES: dict[str, tuple[str, str]] = {
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "bash": ("tree_sitter_bash", "language"),
    "lua": ("tree_sitter_lua", "language"),
    "scala": ("tree_sitter_scala", "language"),
    "kotlin": ("tree_sitter_kotlin", "language"),
    "swift": ("tree_sitter_swift", "language"),
}
FUNCTIONS = {
    "function_declaration", "function_definition", "generator_function_declaration", "method_definition",
    "method_declaration", "constructor_declaration", "function_item", "method", "singleton_method",
    "function_signature_item", "local_function_statement", "function_statement",
}  # fmt: skip
CONTAINERS = {
    "class_declaration", "abstract_class_declaration", "class_definition", "class_specifier", "struct_specifier",
    "interface_declaration", "impl_item", "trait_item", "class", "module", "enum_declaration",
    "object_declaration", "object_definition", "trait_definition", "struct_declaration", "record_declaration",
}  # fmt: skip
WRAPPERS = {"export_statement", "decorated_definition", "template_declaration"}
_VAR_DECLS = {"lexical_declaration", "variable_declaration"}
_FN_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}


@functools.cache
def get_parser(language: str) -> Any | None:
    """A tree-sitter Parser for language, or None when no grammar package is installed."""
    try:
        import tree_sitter
    except ImportError:
        return None
    try:
        from tree_sitter_language_pack import get_parser as pack_parser

        return pack_parser("csharp" if language == "csharp" else language)
    except Exception:
        pass
    module_name, fn = GRAMMAR_MODULES.get(language, ("", ""))
    try:
        module = importlib.import_module(module_name) if module_name else None
        return tree_sitter.Parser(tree_sitter.Language(getattr(module, fn)())) if module else None
    except Exception:
        return None


def _name(node: Any) -> str | None:
    """A definition's name: its `name` field, else the identifier inside its declarator or type."""
    for field in ("name", "declarator", "type"):
        child = node.child_by_field_name(field)
        depth = 0
        while child is not None and depth < 8:
            if child.type.endswith("identifier") or child.type in ("constant", "word"):
                return child.text.decode("utf-8", "replace")
            nxt = child.child_by_field_name("declarator") or child.child_by_field_name("name")
            child, depth = nxt, depth + 1
    return None


def _definitions(node: Any) -> list[tuple[Any, str, str]]:
    """(node, kind, name) of definitions directly under node, looking through export/decorator wrappers."""
    out = []
    for child in node.named_children:
        if child.type in WRAPPERS:
            inner = _definitions(child)
            out.extend((child, kind, name) for _, kind, name in inner[:1])  # keep the wrapper's lines
            out.extend(inner[1:])
        elif child.type in FUNCTIONS:
            out.append((child, "function", _name(child) or "anonymous"))
        elif child.type in CONTAINERS and child.child_by_field_name("body") is not None:
            out.append((child, "class", _name(child) or "anonymous"))
        elif child.type in _VAR_DECLS:
            for decl in child.named_children:
                value = decl.child_by_field_name("value")
                if value is not None and value.type in _FN_VALUES:
                    out.append((child, "function", _name(decl) or "anonymous"))
                    break
    return out


def _inner(node: Any) -> Any:
    """The node whose children are a wrapper's definition (export_statement -> class_declaration)."""
    while node.type in WRAPPERS and node.named_children:
        node = next(
            (c for c in node.named_children if c.type in FUNCTIONS | CONTAINERS), node.named_children[-1]
        )
    return node


def treesitter_chunks(text: str, language: str, cfg: IngestCfg) -> list[Chunk] | None:
    """Definitions as chunks (methods as "Type.method"), or None without a grammar or on a parse failure."""
    parser = get_parser(language)
    if parser is None:
        return None
    try:
        tree = parser.parse(text.encode("utf-8", "surrogatepass"))
    except Exception:
        return None
    root = tree.root_node
    if root.has_error and not _definitions(root):
        return None
    doc = Lines(text)
    covered = [False] * len(doc)
    out: list[Chunk] = []
    for node, kind, name in _definitions(root):
        a, b = node.start_point[0], node.end_point[0]
        if kind == "class":
            keep = dict.fromkeys(range(a, b + 1))
            body = _inner(node).child_by_field_name("body")
            members = _definitions(body) if body is not None else []
            for m, _, mname in members:
                ma, mb = m.start_point[0], m.end_point[0]
                for i in range(ma + 1, mb + 1):
                    keep.pop(i, None)
                out.extend(symbol_chunk(doc, ma, mb, f"{name}.{mname}", "method", cfg))
            out.append(summary_chunk(doc, a, b, [i for i in keep if not doc.blank(i)], name, cfg))
        else:
            out.extend(symbol_chunk(doc, a, b, name, "function", cfg))
        covered[a : b + 1] = [True] * (b - a + 1)
    out.extend(module_chunks(doc, covered, cfg, keep_short=not out))
    return sorted(out, key=lambda c: (c.start, -c.end))
