"""The sans-I/O core: readings, units, estimators, tracker, trips, events, batch.

Nothing here imports asyncio, sockets, MQTT, metrics or the filesystem, or reads a clock:
time is the reading's ``ts``. ``tests/core/test_purity.py`` enforces it.
"""
