"""``python -m clipline``: the same entry point as the ``clipline`` command."""

from clipline.cli import main

if __name__ == "__main__":
    main()
