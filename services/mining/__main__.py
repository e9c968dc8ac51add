from services.mining.server import main

main()
