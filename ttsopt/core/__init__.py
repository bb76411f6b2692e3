"""The ground floor: the words, record schema, claims, statistics and secret handling that every
other floor shares. Nothing here imports torch, so a report can be built from stored records on a
machine without it."""
