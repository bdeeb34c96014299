"""Zeros datasets: the on-disk format, its sources (Odlyzko table, text files, the generator)."""
