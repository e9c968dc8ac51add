from services.credits.server import main

main()
