from voicereel.cli import main

main()
