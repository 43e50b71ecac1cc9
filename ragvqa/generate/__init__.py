"""Old name of `ragvqa.readers`, kept so that existing imports still work."""
