"""`python -m sunrise_assets.cli`: the same as the `sunrise` command."""

from sunrise_assets.cli.app import main

main()
