"""The Kafka event contract (schemas) and its adapters (kafka, memory)."""
