from fastchat.cli import main

main()
