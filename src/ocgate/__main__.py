from ocgate._cli import main

# Guarded: the NVM store's writer runs in a forkserver child, which imports the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
