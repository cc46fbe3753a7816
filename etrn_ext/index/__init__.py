"""The SQL index: a fast, rebuildable view of the MTA queue. Knows no MTA and no protocol."""
