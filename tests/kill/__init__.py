"""Kill tests: workflows run in real subprocesses that are SIGKILLed mid-run, then resumed."""
