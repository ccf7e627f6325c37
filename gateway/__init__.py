"""Home-care gateway runtime: config, ingest, pipeline, sinks, spool, CLI."""
