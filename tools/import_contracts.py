"""An import-linter contract that says what modules MAY import, rather than what they may not.

import-linter's own contract types are deny lists: a "forbidden" contract names what a module
must not reach, so a new dependency nobody thought to forbid passes silently. `allowed_imports`
turns that around, for the rules that are allow lists by nature ("domain modules use the
standard library and core.errors only", "the kernel imports nothing of the project outside
itself"):

    [[tool.importlinter.contracts]]
    name = "..."
    type = "allowed_imports"
    source_modules = ["services.*.domain"]      # each, with its submodules
    allowed_modules = ["services.core.errors"]  # each, with its submodules
    allow_standard_library = true               # optional, default false
    allow_external_packages = false            # optional, default false

Every direct import of a source module must land in an allowed module, in a package that holds
the source, in the standard library (when allowed) or outside the project's root packages (when
allowed). Direct imports suffice:
every submodule of a source is itself checked. Hand-written because import-linter has no allow
list type; it is registered in pyproject.toml under `contract_types`.
"""

from __future__ import annotations

import sys
from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain import helpers


class AllowedImportsContract(Contract):
    type_name = "allowed_imports"

    source_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    allowed_modules = fields.ListField(subfield=fields.ModuleExpressionField())
    allow_standard_library = fields.BooleanField(required=False, default=False)
    allow_external_packages = fields.BooleanField(required=False, default=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        sources = helpers.module_expressions_to_modules(
            graph, self._expressions("source_modules"), as_packages=True
        )
        allowed = {
            module.name
            for module in helpers.module_expressions_to_modules(
                graph, self._expressions("allowed_modules"), as_packages=True
            )
        }
        sources_and_below = {
            name
            for source in sources
            for name in (source.name, *graph.find_descendants(source.name))
        }
        # A package that holds a source (its __init__) is never a dependency to forbid.
        holders = {
            ".".join(name.split(".")[:depth])
            for name in sources_and_below
            for depth in range(1, name.count(".") + 1)
        }
        illegal = sorted(
            (importer, imported)
            for importer in sources_and_below
            for imported in graph.find_modules_directly_imported_by(importer)
            if imported not in holders and not self._allowed(imported, allowed)
        )
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported in check.metadata["illegal"]:
            output.print_error(f"{importer} imports {imported}, which is not allowed.")
            output.new_line()

    def _expressions(self, name: str) -> Any:
        # The fields are parsed onto the instance by Contract.__init__; their type is the
        # field's, which mypy cannot see through the descriptor.
        return getattr(self, name)

    def _allowed(self, imported: str, allowed: set[str]) -> bool:
        if imported in allowed:
            return True
        top = imported.split(".")[0]
        if top in sys.stdlib_module_names:
            return bool(self.allow_standard_library)
        if top in self._root_packages():
            return False
        return bool(self.allow_external_packages)

    def _root_packages(self) -> set[str]:
        roots = self.session_options.get("root_packages") or [self.session_options["root_package"]]
        return set(roots)
