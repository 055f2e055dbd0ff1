"""Pure rating domain: money, periods, catalog, aggregations and pricing. Standard library only."""
