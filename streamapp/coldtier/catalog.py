"""The Iceberg catalog and the cold tier's tables, from settings only.

Default: pyiceberg's SQL catalog on a SQLite file and a warehouse directory, both under
``$STREAMAPP_HOME/iceberg``. ``STREAMAPP_ICEBERG_CATALOG_URI=http://…`` selects a REST catalog,
``STREAMAPP_ICEBERG_WAREHOUSE=s3://…`` (with ``…_S3_*``) S3-compatible storage. The catalog's
name is fixed (:data:`~streamapp.coldtier.schemas.CATALOG_NAME`), so Spark's JDBC catalog on the
same SQLite file sees the same tables.
"""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from streamapp.coldtier import schemas
from streamapp.errors import StreamappError
from streamapp.settings import Settings


def catalog_uri(settings: Settings) -> str:
    return settings.iceberg_catalog_uri or f"sqlite:///{(settings.home / 'iceberg' / 'catalog.db').resolve()}"


def warehouse_uri(settings: Settings) -> str:
    return settings.iceberg_warehouse or (settings.home / "iceberg" / "warehouse").resolve().as_uri()


def storage_properties(settings: Settings) -> dict[str, str]:
    """FileIO properties: S3 endpoint and keys when the warehouse is on object storage."""
    props: dict[str, str] = {}
    if settings.iceberg_s3_endpoint:
        props["s3.endpoint"] = settings.iceberg_s3_endpoint
        props["s3.path-style-access"] = "true"  # MinIO and most S3-compatible stores
    if settings.iceberg_s3_access_key_id:
        props["s3.access-key-id"] = settings.iceberg_s3_access_key_id
    if settings.iceberg_s3_secret_access_key:
        props["s3.secret-access-key"] = settings.iceberg_s3_secret_access_key.get_secret_value()
    if settings.iceberg_warehouse.startswith("s3"):
        props["s3.region"] = settings.iceberg_s3_region
    return props


def open_catalog(settings: Settings) -> Catalog:
    uri = catalog_uri(settings)
    props = {"uri": uri, "warehouse": warehouse_uri(settings)} | storage_properties(settings)
    try:
        if uri.startswith(("http://", "https://")):
            from pyiceberg.catalog.rest import RestCatalog

            return RestCatalog(schemas.CATALOG_NAME, **props)
        from pyiceberg.catalog.sql import SqlCatalog

        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if props["warehouse"].startswith("file://"):
            Path(props["warehouse"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        return SqlCatalog(schemas.CATALOG_NAME, **props)
    except Exception as exc:  # pyiceberg raises anything from sqlalchemy, requests, ...
        raise StreamappError(f"cannot open the Iceberg catalog at {uri} ({type(exc).__name__}: {exc}); "
                             "check STREAMAPP_ICEBERG_CATALOG_URI") from exc


def exists(settings: Settings) -> bool:
    """False where the embedded catalog was never created (nothing offloaded): readers then need not create it."""
    uri = catalog_uri(settings)
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def identifier(settings: Settings, name: str) -> tuple[str, str]:
    return settings.iceberg_namespace, name


def table_properties(settings: Settings) -> dict[str, str]:
    """Bound the old metadata.json files each commit leaves behind."""
    return {
        "write.metadata.delete-after-commit.enabled": "true",
        "write.metadata.previous-versions-max": str(settings.iceberg_metadata_versions_max),
        "write.parquet.compression-codec": "zstd",
    }


def ensure_table(catalog: Catalog, settings: Settings, table: schemas.ColdTable) -> Table:
    """The table, created with its schema, partition spec and properties if missing."""
    catalog.create_namespace_if_not_exists(settings.iceberg_namespace)
    return catalog.create_table_if_not_exists(identifier(settings, table.name), table.schema,
                                              partition_spec=table.spec, properties=table_properties(settings))


def ensure_log(catalog: Catalog, settings: Settings) -> Table:
    catalog.create_namespace_if_not_exists(settings.iceberg_namespace)
    return catalog.create_table_if_not_exists(identifier(settings, schemas.OFFLOAD_LOG), schemas.OFFLOAD_LOG_SCHEMA,
                                              properties=table_properties(settings))


def load(catalog: Catalog, settings: Settings, name: str) -> Table | None:
    """The table, or None where nothing was offloaded into it yet."""
    try:
        return catalog.load_table(identifier(settings, name))
    except NoSuchTableError:
        return None
