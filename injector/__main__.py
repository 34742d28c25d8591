from injector.cli import main

main()
