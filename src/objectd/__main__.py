"""``python -m objectd``: the same as the ``objectd`` command."""

from objectd.cli import main

if __name__ == "__main__":
    main()
