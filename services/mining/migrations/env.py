from services.core.migrate import run_migrations
from services.mining.tables import metadata

run_migrations(metadata)
