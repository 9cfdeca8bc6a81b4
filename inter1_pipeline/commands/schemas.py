"""``inter1-pipeline schemas check|list``: the Avro schemas kept in ``schemas/avsc``."""

from __future__ import annotations

from pathlib import Path

import click

from runtime.settings import SchemaSettings, load
from schemas.catalog import RECORD_TOPICS, SCHEMA_DIR, SchemaCatalog
from schemas.codec import subject
from schemas.compatibility import LEVELS, check_catalog
from schemas.exceptions import (
    IncompatibleSchemaError,
    RegistryNotFoundError,
    SchemaCatalogError,
)
from schemas.lint import doc_problems
from schemas.registry_client import RegistryClient

__all__ = ["schemas"]

_DIR_OPTION = click.option(
    "--schema-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=SCHEMA_DIR,
    show_default="the schemas shipped with the package",
    help="Directory holding <Record>/v<N>.avsc files.",
)


@click.group()
def schemas() -> None:
    """Check and list the Avro schemas (schemas/avsc/<Record>/v<N>.avsc)."""


@schemas.command("list")
@_DIR_OPTION
def list_schemas(schema_dir: Path) -> None:
    """List every record with its kept versions, current fingerprint and topic."""
    catalog = SchemaCatalog.load(schema_dir)
    click.echo(f"{'record':<16} {'versions':<10} {'current':<8} {'fingerprint':<17} topic")
    for name in catalog.names():
        kept = catalog.versions(name)
        versions = ",".join(f"v{rv.version}" for rv in kept)
        current = kept[-1]
        topic = RECORD_TOPICS.get(name, "-")
        click.echo(
            f"{name:<16} {versions:<10} v{current.version:<7} {current.fingerprint.hex():<17} "
            f"{topic}"
        )


@schemas.command("check")
@_DIR_OPTION
@click.option(
    "--level",
    type=click.Choice(LEVELS),
    default=None,
    help="Compatibility level [default: SCHEMA_REGISTRY_COMPATIBILITY, BACKWARD].",
)
@click.option(
    "--registry/--no-registry",
    default=None,
    help="Also check the current schemas against SCHEMA_REGISTRY_URL's subjects "
    "[default: when SCHEMA_REGISTRY_URL is set].",
)
def check(schema_dir: Path, level: str | None, registry: bool | None) -> None:
    """Fail unless every kept version of every record is compatible with the current one.

    BACKWARD (the default): the current version reads data written by every older kept
    version. Also fails on a record or field without a doc.
    """
    settings = load(SchemaSettings)
    level = level or settings.compatibility
    catalog = SchemaCatalog.load(schema_dir)
    undocumented = [p for rv in catalog.all_versions() for p in doc_problems(rv)]
    for line in undocumented:
        click.echo(f"undocumented: {line}", err=True)
    if undocumented:
        raise SchemaCatalogError(
            f"{len(undocumented)} record(s) or field(s) without a doc in {schema_dir}; "
            'add a "doc" to each'
        )
    problems = [str(p) for p in check_catalog(catalog, level)]
    has_url = settings.url is not None and bool(settings.url.get_secret_value())
    if registry is None:
        registry = has_url
    if registry:
        problems.extend(_registry_problems(catalog, settings))
    for problem in problems:
        click.echo(f"incompatible: {problem}", err=True)
    if problems:
        raise IncompatibleSchemaError(
            f"{len(problems)} incompatible schema change(s) at {level}; keep the old "
            "field's type, give new fields a default, or add a new record instead"
        )
    for name in catalog.names():
        kept = catalog.versions(name)
        older = ", ".join(f"v{rv.version}" for rv in kept[:-1])
        reads = f"reads {older}" if older else "only version"
        click.echo(f"ok: {name} v{kept[-1].version} {reads}")
    click.echo(
        f"{len(catalog.names())} records, {len(catalog.all_versions())} versions: "
        f"compatible ({level})"
    )


def _registry_problems(catalog: SchemaCatalog, settings: SchemaSettings) -> list[str]:
    from runtime.topics import topic_name

    if settings.url is None or not settings.url.get_secret_value():
        raise SchemaCatalogError("--registry needs SCHEMA_REGISTRY_URL to be set")
    problems: list[str] = []
    with RegistryClient(
        settings.url.get_secret_value(),
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
    ) as client:
        for name in catalog.names():
            if name not in RECORD_TOPICS:
                continue
            current = catalog.current(name)
            subj = subject(topic_name(RECORD_TOPICS[name]), current.fullname)
            try:
                result = client.check_compatibility(subj, current.schema_json)
            except RegistryNotFoundError:
                click.echo(f"registry: {subj} not registered yet")
                continue
            if result.is_compatible:
                click.echo(f"registry: {subj} accepts {name} v{current.version}")
            else:
                reasons = "; ".join(result.messages) or "no reason given"
                problems.append(
                    f"{name}: v{current.version} is not compatible with the latest version of "
                    f"registry subject {subj}: {reasons}"
                )
    return problems
