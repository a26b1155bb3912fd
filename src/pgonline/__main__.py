from pgonline.cli import main

main()
