"""`python -m cxr_covid` runs the command line."""

from cxr_covid.cli import main

if __name__ == "__main__":
    main()
