"""The database's Alembic migrations, shipped in the package so that a non-editable install (the image's)
can migrate: `app.db.alembic_config` points Alembic at this folder wherever it is installed."""
