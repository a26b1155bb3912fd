from pgonline.cli.main import main

main()
