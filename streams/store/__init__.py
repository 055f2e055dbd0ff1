"""Store: the sink writes accepted records and window totals from Kafka into the usage store."""
