"""Rate: the billing calendar on the clock (the rater), the rating agent and its ``rating.results`` messages."""
