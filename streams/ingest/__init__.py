"""Ingest: usage events onto ``usage.events`` (the SDK's producer), keyed and partitioned by subscription."""
