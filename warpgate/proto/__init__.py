"""Pure protocol logic: codecs and state machines over bytes.

Rule: nothing in this package imports ``asyncio``, ``socket`` or reads a clock; time is passed in.
``tests/unit/test_layers.py`` enforces it.
"""
