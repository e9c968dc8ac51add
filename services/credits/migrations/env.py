from services.core.migrate import run_migrations
from services.credits.tables import metadata

run_migrations(metadata)
