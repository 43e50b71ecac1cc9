"""Training the ReT family (`ragvqa train retriever`)."""
