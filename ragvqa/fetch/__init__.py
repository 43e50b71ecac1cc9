"""The download manager behind `ragvqa data list / fetch / verify`: catalogue, fetching, checks."""
