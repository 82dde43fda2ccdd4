"""Synthetic nights: a simulator of the Sunrise sensor and a PSG study per night (``simulator``),
a writer of raw buckets as sites deliver them (``generate``), and the bootstrap fit of sunalgo's
model on simulated nights for an empty warehouse (``bootstrap_fit``)."""
