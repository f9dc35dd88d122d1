"""Behaviour tests of ``flowkeeper.activities`` against the loopback stand-in."""
