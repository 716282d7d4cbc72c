"""`python -m trainer` is the `trainer` command."""

from trainer.entrypoint import main

if __name__ == "__main__":
    main()
