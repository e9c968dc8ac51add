from services.users.server import main

main()
