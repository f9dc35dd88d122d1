"""Alembic environment and revisions of the Flowkeeper schema (run by ``flowkeeper.store.schema``)."""
