"""The code location Dagster loads (workspace.yaml, the Dockerfile, `dagster job execute -m`).

Everything it holds is assembled in ``sunrise_assets.defs.code_location``.
"""

from sunrise_assets.defs.code_location import ASSETS, build_defs, make_resources

__all__ = ["ASSETS", "build_defs", "defs", "make_resources"]

defs = build_defs()
