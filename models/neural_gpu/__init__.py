"""Extended Neural GPU with memory on the synthetic rare-function task (paper §4.2, Table 2)."""
