"""Knowledge bases: streaming readers, passage chunking, and the Arrow passage store."""
