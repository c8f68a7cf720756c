from srdose.cli import main

main()
