"""The Iceberg cold tier: catalog, schemas, casting, offload planning and I/O, maintenance, verification."""
