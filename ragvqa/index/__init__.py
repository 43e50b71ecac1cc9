"""Vector indexes over a KB's passages: embedding shards, faiss indexes, manifests, search."""
