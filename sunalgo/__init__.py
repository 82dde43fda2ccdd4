"""sunalgo: the Sunrise sleep algorithm as a plain library.

Raw recording format, preprocessing, epoch features, stage and respiratory-event predictions,
clinical scores. Only numpy, scipy, pandas and protobuf: no Dagster, no cloud clients, so the same
code runs in a notebook, in a test and inside the platform.
"""

# Bump on any change that alters outputs: the platform uses it as the code version of every
# asset computed by sunalgo, so a bump makes exactly those assets stale.
__version__ = "0.1.0"
