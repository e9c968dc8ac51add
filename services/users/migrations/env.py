from services.core.migrate import run_migrations
from services.users.tables import metadata

run_migrations(metadata)
