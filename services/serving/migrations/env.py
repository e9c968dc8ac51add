from services.core.migrate import run_migrations
from services.serving.tables import metadata

run_migrations(metadata)
