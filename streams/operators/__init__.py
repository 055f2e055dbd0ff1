"""Pure per-record steps shared by every driver: validate → dedup → windows (15 min, hour, day, month)."""
