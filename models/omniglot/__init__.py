"""The Omniglot experiment of "Learning to Remember Rare Events" (§4.1, Table 1)."""
