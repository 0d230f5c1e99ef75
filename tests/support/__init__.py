"""What tests share besides fixtures: request builders, pump drivers, served apps, real processes, the
browser's screenshots, the fuzzer's world.

The rule: a test module imports only `tests.support.*` (never another test module nor a conftest), and
conftest.py files hold only fixtures and pytest hooks. A helper used by one module stays in that module.
"""
