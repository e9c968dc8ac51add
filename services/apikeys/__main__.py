from services.apikeys.server import main

main()
