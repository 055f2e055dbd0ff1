"""The Kafka adapter: consumer settings and loop, the topics, the usage wire codecs, the catalog
topics reader and the dead-letter reader."""
