"""``python -m sentinel`` runs the same CLI as the ``sentinel`` script."""

from sentinel.cli import main

if __name__ == "__main__":
    main()
