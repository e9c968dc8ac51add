from services.apikeys.tables import metadata
from services.core.migrate import run_migrations

run_migrations(metadata)
