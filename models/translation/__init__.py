"""GNMT-style translation with memory: one-shot learning of rare words (paper §4.3, Table 3)."""
