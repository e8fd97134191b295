"""The contract running and analysis share: the run record, the typed config, the results' files
(torch-free; everything else in the package builds on it)."""
