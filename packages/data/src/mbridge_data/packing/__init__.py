"""Offline sequence packing (first-fit-decreasing) stored as files, loaded with cu_seqlens."""
