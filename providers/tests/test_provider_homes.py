"""A provider is one module: outside its adapter module (or package) and the registry, no
source file names a provider by its slug as a string literal (issue 11, point 1).

Counted: Python, template, JavaScript and CSS files of the project; not counted: tests,
migrations, bench/, demo data (seed_demo), README/docs and data files (the LiteLLM price
snapshot names LiteLLM's providers, not ours).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from providers.registry import ADAPTERS

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SUFFIXES = (".py", ".html", ".js", ".css", ".txt")
SKIPPED_DIRS = {"tests", "migrations", "bench", "docs", "node_modules", "__pycache__"}
SKIPPED_FILES = {Path("accounts/management/commands/seed_demo.py"), Path("providers/registry.py")}


def adapter_home(kind: str) -> Path:
    """The adapter's module file, or its package directory, relative to ROOT."""
    module_path = ADAPTERS[kind][1].rpartition(".")[0]
    path = Path(*module_path.split("."))
    return path if (ROOT / path).is_dir() else path.with_suffix(".py")


def source_files(root: Path) -> list[Path]:
    """Project source files (relative paths) that the count looks at."""
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        parts = relative.parts
        if any(part.startswith(".") or part in SKIPPED_DIRS for part in parts[:-1]):
            continue
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and relative not in SKIPPED_FILES:
            if not path.name.endswith(".min.js"):
                files.append(relative)
    return files


def files_naming(kind: str, root: Path = ROOT) -> list[str]:
    """Source files outside the provider's home that hold ``"kind"``, ``'kind'`` or `kind`."""
    literal = re.compile(r"([\"'`])" + re.escape(kind) + r"\1")
    home = adapter_home(kind)
    found = []
    for relative in source_files(root):
        if relative == home or home in relative.parents:
            continue
        if literal.search((root / relative).read_text(encoding="utf-8", errors="replace")):
            found.append(str(relative))
    return sorted(found)


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_it_finds_no_file_outside_the_providers_module_naming_it(kind):
    assert files_naming(kind) == []


def test_it_counts_a_slug_literal_in_python_templates_and_js_but_not_in_its_home(tmp_path):
    (tmp_path / "providers/adapters").mkdir(parents=True)
    (tmp_path / "providers/adapters/groq.py").write_text('kind = "groq"\n')
    (tmp_path / "usage").mkdir()
    (tmp_path / "usage/pricing.py").write_text("if kind == 'groq':\n    pass\n")
    (tmp_path / "usage/fine.py").write_text("# Groq-style, groq/llama prefixes are no slug\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/page.html").write_text('{% if slug == "groq" %}x{% endif %}')
    (tmp_path / "static").mkdir()
    (tmp_path / "static/app.js").write_text("const c = {groq: 1}; if (k === `groq`) {}\n")
    (tmp_path / "usage/tests").mkdir()
    (tmp_path / "usage/tests/test_x.py").write_text('provider("groq")\n')

    assert files_naming("groq", tmp_path) == [
        "static/app.js",
        "templates/page.html",
        "usage/pricing.py",
    ]


def test_it_treats_a_provider_package_as_one_home(tmp_path, monkeypatch):
    package = tmp_path / "providers/adapters/groq"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pricing.py").write_text('KIND = "groq"\n')
    monkeypatch.setattr(
        "providers.tests.test_provider_homes.ROOT", tmp_path
    )  # adapter_home looks for the package under ROOT

    assert adapter_home("groq") == Path("providers/adapters/groq")
    assert files_naming("groq", tmp_path) == []


def test_it_needs_no_migration_when_a_provider_is_registered(monkeypatch):
    # The catalogue's slug choices are the registry function itself (a callable), so the
    # migration state does not list the providers: registering one changes no field, and the
    # field offers the new provider at once.
    from django.apps import apps
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.state import ProjectState

    from providers import registry
    from providers.models import Provider

    monkeypatch.setitem(registry.ADAPTERS, "acme", ("Acme", "providers.adapters.groq.GroqAdapter"))
    loader = MigrationLoader(None, ignore_no_migrations=True)

    changes = MigrationAutodetector(loader.project_state(), ProjectState.from_apps(apps)).changes(
        graph=loader.graph
    )

    assert "acme" in dict(Provider._meta.get_field("slug").choices)
    assert changes.get("providers", []) == []


@pytest.mark.django_db
def test_it_writes_the_catalogue_on_every_migrate():
    # An existing database gets a newly registered provider (or a changed fact) on its next
    # `migrate`, with no data migration: here a row missing and a name out of date.
    from django.core.management import call_command

    from providers.models import Provider
    from providers.registry import ADAPTERS, get_adapter_class

    Provider.objects.filter(slug="ollama").delete()
    Provider.objects.filter(slug="groq").update(name="Old name")

    call_command("migrate", verbosity=0)

    assert set(Provider.objects.values_list("slug", flat=True)) == set(ADAPTERS)
    groq = get_adapter_class("groq")
    assert Provider.objects.get(slug="groq").name == (groq.catalogue_name or groq.label)
