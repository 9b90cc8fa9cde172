"""Only the HTTP layer knows DRF: services, selectors, the engine, task types and providers raise
the application errors of `config/errors.py` (docs/architecture.md, "Errors").

Read from the source (AST), so an import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "config", "integrations", "interactions", "tasks_catalog")
# The HTTP layer: views, serializers, routes, DRF's extension points (authentication,
# permissions, throttles, the parser, the exception handler, the schema extension and the app
# that registers it), the viewsets' owner-scoping mixin, the run view's `Prefer: wait` answer and
# the ASGI server that completes it (and the `serve` command that runs that server).
GLUE_NAMES = {"views.py", "serializers.py", "urls.py"}
GLUE_MODULES = {
    "config.api_errors", "config.parsers", "accounts.authentication", "accounts.permissions",
    "accounts.throttling", "accounts.rate_limits", "accounts.schema", "accounts.apps", "accounts.ownership",
    "interactions.waiting", "config.asgi", "interactions.management.commands.serve",
    # End users' routes: their views, serializers and URLs, and the end-user token authentication.
    "accounts.app_views", "accounts.app_serializers", "accounts.app_urls", "accounts.enduser_auth",
    # The API's conventions (docs/api.md): the OpenAPI document, routes with and without the
    # slash, lists, JSON-typed input.
    "config.openapi", "config.routing", "config.listing", "config.json_input",
    "integrations.openapi", "interactions.openapi",
    # The apps that register those schema extensions when Django starts.
    "integrations.apps", "interactions.apps",
}
FRAMEWORK = ("rest_framework", "drf_spectacular", "django_filters.rest_framework")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _is_glue(name: str) -> bool:
    return name in GLUE_MODULES or MODULES[name].name in GLUE_NAMES


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _framework(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in FRAMEWORK)


def test_the_layer_lists_name_real_modules():
    assert GLUE_MODULES <= set(MODULES)
    assert "interactions.services" in MODULES and not _is_glue("interactions.services")


def test_no_module_outside_the_http_layer_imports_drf_or_the_http_layer():
    offenders = {}
    for name, path in sorted(MODULES.items()):
        if _is_glue(name):
            continue
        bad = sorted(
            imported for imported in _imports(path)
            if _framework(imported) or (imported in MODULES and _is_glue(imported))
        )
        if bad:
            offenders[name] = bad
    assert offenders == {}, "move HTTP concerns to a view/serializer, or raise config.errors instead"


def test_the_application_errors_import_no_web_framework():
    imported = _imports(MODULES["config.errors"])
    assert not any(name.startswith(("django", "rest_framework")) for name in imported), imported
