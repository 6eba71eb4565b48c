"""Adapters around the core: payload decoding, logs, MQTT, metrics, state store."""
