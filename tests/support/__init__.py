"""Shared test support: the loopback stand-in for internet hosts (:mod:`tests.support.standin`)
and its pytest fixture (:mod:`tests.support.fixtures`)."""
